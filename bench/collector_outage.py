"""InfluxDB down for a minute during ingest: nothing lost, the spool drains after.

One command:

    .venv/bin/python bench/collector_outage.py                  # 60 s outage, 2,000 events/s
    .venv/bin/python bench/collector_outage.py --outage 120 --rate 10000

A private InfluxDB (its own folder and free port; the shared one is never touched) receives a
steady stream from a collector process. Mid-stream the private InfluxDB is stopped for
--outage seconds while publishing goes on, then started again. The script prints what was
published, what the collector spooled and drained, how long the drain took, and checks that
InfluxDB ends up holding exactly one point per event. The tests do the same with a
few-second outage; this is the full-length run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.collector_throughput import (  # noqa: E402
    bench_settings,
    cleanup_redis,
    environment_for,
    generate_stream,
    register_aps,
)
from census.channels import events_topic  # noqa: E402
from census.mqtt import MqttClient  # noqa: E402
from census.settings import Settings  # noqa: E402
from timeseries import TimeSeriesStore, open_store  # noqa: E402
from wifi_census import local_servers as local_services  # noqa: E402

BIN = Path(sys.executable).parent


def free_port_pair() -> int:
    """A loopback port p with p and p+2 free (InfluxDB also binds p+2)."""
    for port in range(28086, 29000, 3):
        if local_services.port_is_free("127.0.0.1", port) and local_services.port_is_free(
            "127.0.0.1", port + 2
        ):
            return port
    raise SystemExit("no free port pair for the private InfluxDB")


def count(store: TimeSeriesStore) -> int:
    """Points in the presence measurement (0 while InfluxDB is down)."""
    try:
        frame = store.query("SELECT count(device) AS n FROM presence")
    except Exception:  # down or restarting: the caller polls again
        return -1
    return 0 if frame.empty else int(frame["n"].sum())


def main() -> None:
    """Run the outage scenario and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outage", type=float, default=60.0, help="seconds InfluxDB is down")
    parser.add_argument("--rate", type=float, default=2000.0, help="events/s published")
    arguments = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="census-outage-"))
    run_id = uuid.uuid4().hex[:8]
    port = free_port_pair()
    base = bench_settings(tmp, run_id)
    settings = Settings.load(environ={}, **{**base.__dict__,
                                            "influx_url": f"http://127.0.0.1:{port}"})
    influx = next(s for s in local_services.build_services(settings) if s.name == "influxdb")
    print(local_services.start(influx))
    duration = arguments.outage + 40.0
    stream = generate_stream(int(arguments.rate * duration) + 1, aps=500)
    register_aps(settings, {ap for ap, _ in stream.messages})
    store = open_store(settings)
    environment = environment_for(settings)
    client_id = f"bench-outage-{run_id}"
    subprocess.run([str(BIN / "wifi-census"), "collector", "prepare", "--client-id", client_id],
                   env=environment, check=True, capture_output=True, timeout=60)
    collector = subprocess.Popen(
        [str(BIN / "wifi-census"), "collector", "run", "--client-id", client_id,
         "--metrics-port", "0", "--exit-when-idle", "5", "--summary-json"],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    published = [0]

    def feed() -> None:
        """Publish the stream at the target rate."""
        client = MqttClient(settings, "")
        client.connect()
        started = time.perf_counter()
        for ap_id, payload in stream.messages:
            client.publish(events_topic(settings.mqtt_topic_prefix, ap_id), payload, wait=False)
            published[0] += payload.count(b'"v":')
            ahead = published[0] / arguments.rate - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)
        client.wait_until_published(timeout=600)
        client.disconnect()

    try:
        feeder = threading.Thread(target=feed)
        feeder.start()
        time.sleep(15)
        print(f"t=15s: {count(store)} points stored; "
              f"stopping InfluxDB for {arguments.outage:.0f} s")
        print(local_services.stop(influx))
        time.sleep(arguments.outage)
        print(f"published so far: {published[0]}; starting InfluxDB again")
        print(local_services.start(influx))
        restarted = time.perf_counter()
        feeder.join()
        stdout, stderr = collector.communicate(timeout=900)
        if collector.returncode != 0:
            raise SystemExit(f"collector failed:\n{stderr[-3000:]}")
        summary = json.loads(stdout.strip().splitlines()[-1])
        stored = count(store)
        print(f"published {published[0]} events; collector received "
              f"{summary['events_received']}, spooled {summary['spooled']} during the outage, "
              f"{summary['spool_depth']} left in the spool")
        print(f"drained and finished {time.perf_counter() - restarted:.1f} s after InfluxDB "
              "returned")
        verdict = "nothing lost, nothing doubled" if stored == published[0] else "MISMATCH"
        print(f"InfluxDB holds {stored} points for {published[0]} events: {verdict}")
    finally:
        if collector.poll() is None:
            collector.kill()
        client = MqttClient(settings, client_id)  # end the session
        client.connect()
        client.disconnect()
        store.close()
        local_services.stop(influx)
        cleanup_redis(settings)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
