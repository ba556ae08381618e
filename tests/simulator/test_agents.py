"""The stand-in AP agents: the contract's checks, a client table like openNDS's, the answers."""

from __future__ import annotations

from typing import Any

from census.channels import ack_topic, command_topic
from census.commands import build_command
from census.mqtt import MqttClient
from census.settings import Settings
from simulator.agents import SimulatedAgents
from tests.common import Subscriber

KEY = "agent-key-" + "0" * 30
MAC = "a4:83:e7:12:9f:01"


def test_agents_apply_authorize_and_deauthorize_and_refuse_replays(settings: Settings) -> None:
    """Real broker: authorize lists the MAC, a replay is refused by name, deauthorize removes
    it, an AP nobody runs answers wrong_ap; every answer reaches the ack topic."""
    answers = Subscriber(settings, ack_topic(settings.mqtt_topic_prefix, "+"),
                         ack_topic(settings.mqtt_topic_prefix, "probe"))
    agents = SimulatedAgents(settings, {"ap-1": KEY}.get)
    agents.start()
    publisher = MqttClient(settings)
    publisher.connect()
    prefix = settings.mqtt_topic_prefix
    authorize = build_command(KEY, "authorize", "ap-1", MAC, 3600, nonce="00000000000000a1")
    sent = [("ap-1", authorize.to_json()), ("ap-1", authorize.to_json()),
            ("ap-9", build_command(KEY, "authorize", "ap-9", MAC, 60,
                                   nonce="00000000000000a2").to_json())]
    try:
        for ap_id, payload in sent:
            publisher.publish(command_topic(prefix, ap_id), payload)
        assert agents.wait_for_answers(3, timeout=20)
        assert set(agents.authorized["ap-1"]) == {MAC}
        publisher.publish(command_topic(prefix, "ap-1"), build_command(
            KEY, "deauthorize", "ap-1", MAC, 0, nonce="00000000000000a3").to_json())
        assert agents.wait_for_answers(4, timeout=20)
    finally:
        publisher.disconnect()
        agents.stop()
    assert agents.authorized["ap-1"] == {}
    assert agents.answers == {"ok": 2, "replayed": 1, "wrong_ap": 1}
    received: list[Any] = sorted((answers.get()[1] for _ in range(4)),
                                 key=lambda a: (a["nonce"], a["error"]))
    answers.close()
    assert [(a["nonce"], a["ok"], a["error"]) for a in received] == [
        ("00000000000000a1", True, ""), ("00000000000000a1", False, "replayed"),
        ("00000000000000a2", False, "wrong_ap"), ("00000000000000a3", True, "")]
