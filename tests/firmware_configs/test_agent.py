"""census-agent under BusyBox ash against the real broker, with a stand-in ndsctl that records.

Commands are signed by the portal's own signer (census.commands.build_command); every refusal
is also checked against census.commands.verify_command, so the shell agent and the Python
contract give the same answer word for the same bytes.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from census.commands import (
    CommandError,
    NonceCache,
    build_command,
    parse_ack,
    signature,
    verify_command,
)
from tests.firmware_configs.apside import AGENT, Script, start_script, wait_until, write_conf

BROKER_PORT = 18830
MAC = "a4:83:e7:12:9f:01"


@dataclass
class Agent:
    """A running agent and what it is connected to."""

    script: Script
    ap_id: str
    key: str
    prefix: str
    acks: Path
    ndsctl: Path
    path: str
    folder: Path
    environment: dict[str, str]

    def start(self) -> None:
        """Start (or start again) the agent script."""
        self.script = start_script(AGENT, self.path, self.folder / "agent.log",
                                   **self.environment)

    def send(self, payload: bytes | str) -> None:
        """Publish a command payload on this AP's command topic (QoS 1)."""
        body = payload.decode() if isinstance(payload, bytes) else payload
        subprocess.run(["mosquitto_pub", "-p", str(BROKER_PORT), "-q", "1",
                        "-t", f"{self.prefix}/v1/ap/{self.ap_id}/cmd", "-m", body],
                       check=True, timeout=10)

    def ack_for(self, nonce: str, count: int = 1, timeout: float = 20.0) -> list[dict[str, object]]:
        """The agent's answers to a nonce, once there are count of them."""
        def answers() -> list[dict[str, object]]:
            lines = self.acks.read_text().splitlines()
            for line in lines:
                parse_ack(line)  # every answer is a contract ack (census.commands)
            found = [json.loads(line) for line in lines]
            return [ack for ack in found if ack.get("nonce") == nonce]
        wait_until(lambda: len(answers()) >= count, timeout, f"an ack for {nonce}")
        return answers()

    def calls(self) -> list[str]:
        """What ndsctl was asked, in order."""
        path = self.ndsctl / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def command(self, cmd: str = "authorize", mac: str = MAC, session: int = 3600,
                **kwargs: object) -> tuple[str, bytes]:
        """A command signed with this AP's key: (nonce, payload)."""
        command = build_command(self.key, cmd, self.ap_id, mac, session, **kwargs)  # type: ignore[arg-type]
        return command.nonce, command.to_json()


@contextmanager
def running_agent(folder: Path, path: str, **environment: str) -> Iterator[Agent]:
    """An agent with its own AP id, key and prefix; its persistent session made before it runs."""
    prefix = f"test-agent-{uuid.uuid4().hex[:8]}"
    ap_id = f"ap-{uuid.uuid4().hex[:8]}"
    key = f"secret-{uuid.uuid4().hex}"
    (folder / "command.key").write_text(key + "\n")
    ndsctl = folder / "ndsctl"
    ndsctl.mkdir()
    conf = write_conf(folder / "ap.conf", AP_ID=ap_id, TOPIC_PREFIX=prefix,
                      BROKER_HOST="127.0.0.1", BROKER_PORT=BROKER_PORT,
                      COMMAND_KEY_FILE=folder / "command.key")
    client_id = f"{ap_id}-agent"
    command_topic = f"{prefix}/v1/ap/{ap_id}/cmd"
    # The agent's persistent session exists before it runs: commands sent while it is away
    # are queued for it (contract section 4), so no test races its start.
    subprocess.run(["mosquitto_sub", "-p", str(BROKER_PORT), "-c", "-i", client_id, "-q", "1",
                    "-t", command_topic, "-E"], check=True, timeout=10)
    acks = folder / "acks.jsonl"
    with open(acks, "w") as sink:
        listener = subprocess.Popen(["mosquitto_sub", "-p", str(BROKER_PORT), "-q", "1",
                                     "-t", f"{command_topic}/ack"], stdout=sink)
    time.sleep(0.3)  # the listener's SUBACK before any answer
    running = Agent(None, ap_id, key, prefix, acks, ndsctl, path, folder,  # type: ignore[arg-type]
                    {"CENSUS_CONF": str(conf), "CENSUS_STATE_DIR": str(folder / "state"),
                     "NDSCTL_STANDIN_DIR": str(ndsctl), **environment})
    running.start()
    try:
        yield running
    finally:
        running.script.stop()
        listener.terminate()
        listener.wait(5)
        # Leave nothing on the shared broker: the session, and the retained status.
        subprocess.run(["mosquitto_sub", "-p", str(BROKER_PORT), "-i", client_id,
                        "-t", command_topic, "-E"], timeout=10)
        subprocess.run(["mosquitto_pub", "-p", str(BROKER_PORT), "-r", "-n",
                        "-t", f"{prefix}/v1/ap/{ap_id}/status"], timeout=10)


@pytest.fixture(scope="module")
def agent(openwrt_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    """One agent for the module's tests."""
    with running_agent(tmp_path_factory.mktemp("agent"), openwrt_bin) as running:
        yield running


@pytest.fixture
def ndsctl_exits(agent: Agent) -> Iterator[Path]:
    """The stand-in ndsctl's scripted exit codes for this test (cleared afterwards)."""
    script = agent.ndsctl / "exit_codes"
    yield script
    script.unlink(missing_ok=True)


def python_verdict(agent: Agent, payload: bytes) -> str:
    """census.commands.verify_command's answer for the same bytes: 'ok' or the reason."""
    try:
        verify_command(payload, agent.key, agent.ap_id, NonceCache())
    except CommandError as error:
        return error.reason
    return "ok"


def test_a_signed_authorize_runs_ndsctl_auth_with_the_session_in_minutes(agent: Agent) -> None:
    """A valid command: ndsctl auth MAC MINUTES (rounded up), and an ok answer."""
    before = len(agent.calls())
    nonce, payload = agent.command(session=3601)
    agent.send(payload)
    assert agent.ack_for(nonce) == [{"v": 1, "nonce": nonce, "ok": True, "error": ""}]
    assert agent.calls()[before:] == [f"auth {MAC} 61"]


def test_a_signed_deauthorize_runs_ndsctl_deauth(agent: Agent) -> None:
    """deauthorize: ndsctl deauth MAC."""
    before = len(agent.calls())
    nonce, payload = agent.command("deauthorize", mac="ba:1c:3d:77:02:9e")
    agent.send(payload)
    assert agent.ack_for(nonce)[0]["ok"] is True
    assert agent.calls()[before:] == ["deauth ba:1c:3d:77:02:9e"]


def test_a_replayed_command_is_refused_and_not_applied_twice(agent: Agent) -> None:
    """The same signed bytes again: replayed, ndsctl called once."""
    before = len(agent.calls())
    nonce, payload = agent.command(mac="02:00:00:00:00:01")
    agent.send(payload)
    agent.send(payload)
    answers = agent.ack_for(nonce, count=2)
    assert [(a["ok"], a["error"]) for a in answers] == [(True, ""), (False, "replayed")]
    assert agent.calls()[before:] == ["auth 02:00:00:00:00:01 60"]


def _resigned(agent: Agent, **changes: object) -> bytes:
    """A command with fields changed and signed again with the right key."""
    base = build_command(agent.key, "authorize", agent.ap_id, MAC, 3600)
    changed = replace(base, **changes)  # type: ignore[arg-type]
    return replace(changed, sig=signature(agent.key, changed)).to_json()


def _edited(agent: Agent, **changes: object) -> bytes:
    """A correctly signed command with JSON fields changed afterwards (not re-signed)."""
    data = json.loads(build_command(agent.key, "authorize", agent.ap_id, MAC, 3600).to_json())
    data.update(changes)
    for name, value in changes.items():
        if value is None:
            del data[name]
    return json.dumps(data, separators=(",", ":")).encode()


REFUSALS = {
    "forged": (lambda a: build_command("not-the-key", "authorize", a.ap_id, MAC, 60).to_json(),
               "bad_signature"),
    "tampered mac": (lambda a: _edited(a, mac="a4:83:e7:12:9f:02"), "bad_signature"),
    "longer session": (lambda a: _edited(a, session_seconds=2592000), "bad_signature"),
    "unsigned": (lambda a: _edited(a, sig=None), "bad_field"),
    "expired": (lambda a: build_command(a.key, "authorize", a.ap_id, MAC, 60,
                                        now=time.time() - 400).to_json(), "expired"),
    "from the future": (lambda a: build_command(a.key, "authorize", a.ap_id, MAC, 60,
                                                now=time.time() + 600).to_json(),
                        "not_yet_valid"),
    "other AP": (lambda a: build_command(a.key, "authorize", "ap-someone-else", MAC,
                                         60).to_json(), "wrong_ap"),
    "version 2": (lambda a: _resigned(a, v=2), "bad_version"),
    "uppercase mac": (lambda a: _resigned(a, mac="A4:83:E7:12:9F:01"), "bad_field"),
    "session as text": (lambda a: _edited(a, session_seconds="3600"), "bad_field"),
    "unknown cmd": (lambda a: _resigned(a, cmd="reboot"), "bad_field"),
    "short nonce": (lambda a: _edited(a, nonce="abc"), "bad_field"),
    "nonce and a newline": (lambda a: _edited(a, nonce="9c1d4e0b7a2f6e31\n"), "bad_field"),
    "issued past 2106": (lambda a: _resigned(a, issued=2**40, expires=2**40 + 300), "bad_field"),
    "thirty-digit expiry": (lambda a: _resigned(a, expires=10**30), "bad_field"),
    "truncated JSON": (lambda a: build_command(a.key, "authorize", a.ap_id, MAC,
                                               60).to_json()[:-20], "bad_json"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_bad_command_is_refused_with_the_contract_word_and_never_reaches_ndsctl(
    agent: Agent, case: str,
) -> None:
    """Each attack or mistake: the agent's answer word is census.commands', ndsctl untouched."""
    make, reason = REFUSALS[case]
    payload = make(agent)
    assert python_verdict(agent, payload) == reason  # the Python contract agrees
    data = payload.decode()
    nonce = data.split('"nonce":"')[1].split('"')[0] if '"nonce":"' in data else ""
    before = len(agent.calls())
    logged = agent.script.output().count(f": {reason} (")
    agent.send(payload)
    if re.fullmatch(r"[0-9a-f]{16}", nonce):
        answers = agent.ack_for(nonce)
        assert [(a["ok"], a["error"]) for a in answers] == [(False, reason)]
    else:  # no nonce to answer to: refused in the log only
        wait_until(lambda: agent.script.output().count(f": {reason} (") > logged, 10,
                   f"a {reason} refusal in the log")
    time.sleep(0.2)
    assert agent.calls()[before:] == []


def test_an_authorize_without_a_session_length_is_refused(agent: Agent) -> None:
    """ndsctl reads 0 minutes as 'no limit': the agent never passes it on, signed or not."""
    payload = _resigned(agent, session_seconds=0)
    nonce = json.loads(payload)["nonce"]
    before = len(agent.calls())
    agent.send(payload)
    assert [(a["ok"], a["error"]) for a in agent.ack_for(nonce)] == [(False, "bad_field")]
    assert agent.calls()[before:] == []


def test_a_payload_without_a_nonce_is_refused_and_logged(agent: Agent) -> None:
    """Nothing to answer to: refused and logged, ndsctl untouched."""
    before = len(agent.calls())
    agent.send('["authorize","a4:83:e7:12:9f:01"]')
    wait_until(lambda: "refused command: bad_json" in agent.script.output(), 20, "the log line")
    assert agent.calls()[before:] == []


def test_a_busy_ndsctl_is_retried(agent: Agent, ndsctl_exits: Path) -> None:
    """ndsctl exits 4 while another caller holds it: tried again until it answers."""
    ndsctl_exits.write_text("4 4")
    before = len(agent.calls())
    nonce, payload = agent.command(mac="02:00:00:00:00:04")
    agent.send(payload)
    assert agent.ack_for(nonce)[0]["ok"] is True
    assert agent.calls()[before:] == ["auth 02:00:00:00:00:04 60"] * 3


@pytest.mark.parametrize(("cmd", "code", "error"), [
    ("authorize", "3", "opennds_down"),
    ("authorize", "1", "ndsctl_refused"),
    ("authorize", "2", "ndsctl_bad_reply"),
    ("deauthorize", "1", ""),  # "client not found": it is not authorized, as asked
])
def test_ndsctl_failures_are_answered(agent: Agent, ndsctl_exits: Path, cmd: str, code: str,
                                      error: str) -> None:
    """ndsctl's exit codes (openNDS src/ndsctl.c) become the ack's outcome."""
    ndsctl_exits.write_text(code)
    nonce, payload = agent.command(cmd, mac="02:00:00:00:00:05")
    agent.send(payload)
    assert [(a["ok"], a["error"]) for a in agent.ack_for(nonce)] == [(not error, error)]


def test_the_agent_keeps_the_ap_status_retained(agent: Agent) -> None:
    """{p}/v1/ap/{ap}/status: retained online while the agent runs (section 3)."""
    status = subprocess.run(["mosquitto_sub", "-p", str(BROKER_PORT), "-C", "1", "-W", "5",
                             "-t", f"{agent.prefix}/v1/ap/{agent.ap_id}/status"],
                            capture_output=True, text=True, timeout=10).stdout
    message = json.loads(status)
    assert message["v"] == 1 and message["online"] is True
    assert abs(message["ts"] - time.time()) < 600


def test_the_nonce_store_is_bounded(openwrt_bin: str, tmp_path: Path) -> None:
    """Nonces are kept until their command expires, but never more than CENSUS_NONCE_MAX."""
    with running_agent(tmp_path, openwrt_bin, CENSUS_NONCE_MAX="3") as small:
        nonces = []
        for index in range(5):
            nonce, payload = small.command(mac=f"02:00:00:00:01:{index:02x}")
            small.send(payload)
            nonces.append(nonce)
        assert small.ack_for(nonces[-1])[0]["ok"] is True
        stored = (tmp_path / "state" / "nonces").read_text().split()[::2]
        assert stored == nonces[-3:]
        assert len(small.calls()) == 5


def test_commands_sent_while_the_agent_is_away_arrive_and_replays_stay_refused(
    openwrt_bin: str, tmp_path: Path,
) -> None:
    """Persistent session: a command sent while the agent restarts is applied when it is back;
    the nonces it had seen survive the restart (kept in /tmp), so a replay is still refused."""
    with running_agent(tmp_path, openwrt_bin) as restarting:
        first, first_payload = restarting.command(mac="02:00:00:00:02:01")
        restarting.send(first_payload)
        assert restarting.ack_for(first)[0]["ok"] is True
        log = restarting.script.stop()
        assert "answering commands" in log
        later, later_payload = restarting.command(mac="02:00:00:00:02:02")
        restarting.send(later_payload)  # nobody is listening now
        restarting.send(first_payload)  # and a replay of the first
        restarting.start()
        assert restarting.ack_for(later)[0]["ok"] is True
        answers = restarting.ack_for(first, count=2)
        assert [(a["ok"], a["error"]) for a in answers] == [(True, ""), (False, "replayed")]
        assert restarting.calls() == ["auth 02:00:00:00:02:01 60", "auth 02:00:00:00:02:02 60"]


def test_a_restart_after_sigkill_ends_the_old_subscription(openwrt_bin: str,
                                                           tmp_path: Path) -> None:
    """procd's SIGKILL leaves mosquitto_sub behind; the next agent ends it and takes over."""
    with running_agent(tmp_path, openwrt_bin) as killed:
        wait_until(lambda: (tmp_path / "state" / "sub.pid").exists(), 20, "the subscription")
        old = int((tmp_path / "state" / "sub.pid").read_text())
        killed.script.process.kill()
        killed.script.process.wait(5)
        assert Path(f"/proc/{old}").exists()  # orphaned, still connected
        killed.start()
        wait_until(lambda: not Path(f"/proc/{old}").exists()
                   or "Z" in Path(f"/proc/{old}/stat").read_text().split()[2], 20,
                   "the old mosquitto_sub to end")
        nonce, payload = killed.command(mac="02:00:00:00:03:01")
        killed.send(payload)
        assert killed.ack_for(nonce)[0]["ok"] is True
        assert "a killed agent left behind" in killed.script.output()
