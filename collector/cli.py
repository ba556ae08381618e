"""`wifi-census collector ...` and `wifi-census sniff`: the collector's command line."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import click

from census.channels import RedisKeys
from census.startup import load_settings
from collector import logs


@click.group()
def collector() -> None:
    """Ingest AP events from MQTT into InfluxDB and Redis."""


def _summary_lines(summary: dict[str, Any]) -> list[str]:
    """The exit summary as short lines for people."""
    rejected = summary["dead_lettered"]
    total_rejected = sum(rejected.values())
    reasons = ", ".join(f"{reason} {count}" for reason, count in rejected.items()) or "none"
    return [
        f"received: {summary['messages']} messages, {summary['events_received']} events",
        f"written to InfluxDB: {summary['written']} points "
        f"({summary['spooled']} went through the spool; {summary['spool_depth']} still spooled)",
        f"dead-lettered: {total_rejected} ({reasons})",
        f"rate: {summary['events_per_second']:.0f} events/s over {summary['active_seconds']} s "
        f"of activity, using {summary['active_cpu_seconds']} s of CPU",
    ]


@collector.command("run")
@click.option("--client-id", default=None,
              help="MQTT client id = persistent session (default WIFI_CENSUS_COLLECTOR_CLIENT_ID).")
@click.option("--share-group", default=None, metavar="NAME",
              help="Share the load with other collectors: subscribe to $share/NAME/...")
@click.option("--exit-when-idle", type=click.FloatRange(min=0.1), default=None, metavar="SECONDS",
              help="Stop cleanly, everything flushed, once no message arrived for this long.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Prometheus /metrics port (default WIFI_CENSUS_METRICS_PORT; 0: off).")
@click.option("--spool-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="On-disk spool folder (default <var_dir>/spool/collector).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="json: one JSON object per log line.")
@click.option("--summary-json", is_flag=True, help="Print the exit summary as one JSON line.")
def run_command(client_id: str | None, share_group: str | None, exit_when_idle: float | None,
                metrics_port: int | None, spool_dir: Path | None, log_format: str,
                summary_json: bool) -> None:
    """Run a collector until SIGTERM/SIGINT (or until idle with --exit-when-idle)."""
    from census.settings import _parse_share_group
    from collector.service import Collector, CollectorError, CollectorOptions

    settings = load_settings()
    logs.configure(settings.log_level, log_format == "json")
    if share_group is not None:
        try:
            _parse_share_group(share_group)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--share-group") from None
    options = CollectorOptions.from_settings(
        settings, client_id=client_id, share_group=share_group, exit_when_idle_s=exit_when_idle,
        metrics_port=metrics_port, spool_dir=spool_dir,
    )
    service = Collector(settings, options)
    # The parser thread is CPU-bound; with Python's default 5 ms switch interval the writer
    # and presence threads (mostly waiting on sockets) queue behind it for the GIL at every
    # step of an HTTP request. 1 ms keeps them moving (about +10% end to end in a run here).
    sys.setswitchinterval(0.001)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        """First signal: graceful stop with flush; second: stop without waiting for storage."""
        if service.stopping:
            service.abort()
        else:
            service.request_stop()

    previous = {number: signal.signal(number, on_signal)
                for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        summary = service.run().as_dict()
    except CollectorError as error:
        raise click.ClickException(f"collector cannot start: {error}") from None
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if summary_json:
        click.echo(json.dumps(summary))
    else:
        for line in _summary_lines(summary):
            click.echo(line)
    if summary["spool_depth"]:
        click.echo(f"warning: {summary['spool_depth']} points wait in the spool; the next run "
                   "drains them when InfluxDB answers", err=True)


@collector.command("prepare")
@click.option("--client-id", default=None, help="The collector's client id (session) to create.")
@click.option("--share-group", default=None, metavar="NAME", help="As for `collector run`.")
def prepare_command(client_id: str | None, share_group: str | None) -> None:
    """Create the collector's persistent session now, so events published before it first runs
    are kept by the broker for it."""
    from census.channels import events_subscription
    from census.mqtt import MqttClient, MqttError

    settings = load_settings()
    client_id = client_id or settings.collector_client_id
    topic = events_subscription(settings.mqtt_topic_prefix,
                                share_group or settings.collector_share_group or None)
    client = MqttClient(settings, client_id, persistent_session=True, manual_ack=True)
    try:
        client.connect()
        client.subscribe(topic, qos=1)
    except MqttError as error:
        raise click.ClickException(str(error)) from None
    finally:
        client.disconnect()
    click.echo(f"session {client_id} subscribed to {topic}; the broker keeps its events")


@collector.command("deadletters")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
def deadletters_command(limit: int) -> None:
    """Show the newest dead-letter samples (MACs in them are already pseudonymised)."""
    import redis

    settings = load_settings()
    client = redis.Redis.from_url(settings.redis_url)
    key = RedisKeys(settings.redis_key_prefix).deadletter()
    try:
        entries: list[Any] = list(client.xrevrange(key, count=limit) or [])
        kept = client.xlen(key)
    except redis.RedisError as error:
        raise click.ClickException(f"Redis: {error}") from None
    for entry_id, values in entries:
        fields = {_text(k): _text(v) for k, v in dict(values or {}).items()}
        click.echo(f"{_text(entry_id)} {fields.get('reason', '?'):14} {fields.get('topic', '')}"
                   f"  {fields.get('detail', '')}")
        click.echo(f"    {fields.get('payload', '')[:300]}")
    click.echo(f"{len(entries)} shown of {kept} kept in {key}")


def _text(value: Any) -> str:
    """Redis bytes as text (undecodable bytes escaped)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


@collector.command("spool")
@click.option("--spool-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
def spool_command(spool_dir: Path | None) -> None:
    """Show what waits in the on-disk spool (drained by a running collector)."""
    from collector.service import CollectorOptions
    from collector.spool import Spool

    options = CollectorOptions.from_settings(load_settings(), spool_dir=spool_dir)
    spool = Spool(options.spool_dir / "batches")
    click.echo(f"{spool.directory}: {spool.depth} points in {spool.files} files")


@click.command("sniff")
@click.option("--iface", default=None, metavar="IFACE", help="Monitor-mode interface (live).")
@click.option("--pcap", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="Read frames from a pcap file instead.")
@click.option("--ap-id", required=True,
              help="The sniffer's id in the registry; events go to {p}/v1/ap/ID/events.")
@click.option("--probe-interval", type=click.FloatRange(min=0.0), default=10.0,
              show_default=True, help="Keep one probe per station per this many seconds.")
@click.option("--batch", "batch_events", type=click.IntRange(1, 5000), default=500,
              show_default=True, help="Events per published message.")
def sniff(iface: str | None, pcap: Path | None, ap_id: str, probe_interval: float,
          batch_events: int) -> None:
    """Turn 802.11 probe requests and (dis)association frames into AP events and publish them."""
    from census.mqtt import MqttError
    from collector.sniffer import SnifferError, run_sniffer

    settings = load_settings()
    logs.configure(settings.log_level, False)
    stop = threading.Event()
    previous = {number: signal.signal(number, lambda _s, _f: stop.set())
                for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        stats = run_sniffer(settings, ap_id, iface=iface, pcap=pcap,
                            probe_interval_s=probe_interval, batch_events=batch_events, stop=stop)
    except (SnifferError, MqttError) as error:
        raise click.ClickException(str(error)) from None
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    counts = stats.as_dict()
    click.echo(" ".join(f"{name}={value}" for name, value in counts.items()))
    if stats.frames and not stats.events:
        click.echo("no station events in the capture", err=True)
