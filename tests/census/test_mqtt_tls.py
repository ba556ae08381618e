"""census.mqtt over TLS, against a real Mosquitto TLS listener started for the test."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path

import pytest

from census.mqtt import MqttClient, MqttError, ReceivedMessage
from census.settings import Settings, SettingsError, generate_keys
from tests.brokers import Pki, make_pki, mosquitto, run_as_me
from tests.common import free_port


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A CA and the broker's certificate for 127.0.0.1."""
    return make_pki(tmp_path / "pki")


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[tuple[int, int]]:
    """A broker with a server-authenticated TLS port and a client-certificate TLS port."""
    plain_tls, mutual_tls = free_port(), free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(run_as_me() + f"""per_listener_settings true
log_dest stdout
listener {plain_tls} 127.0.0.1
certfile {pki.server_cert}
keyfile {pki.server_key}
allow_anonymous true
listener {mutual_tls} 127.0.0.1
certfile {pki.server_cert}
keyfile {pki.server_key}
cafile {pki.ca}
require_certificate true
use_identity_as_username true
""")
    with mosquitto(config, [plain_tls, mutual_tls]):
        yield plain_tls, mutual_tls


def tls_settings(port: int, ca: Path, certfile: Path | None = None,
                 keyfile: Path | None = None) -> Settings:
    """Settings for a TLS connection to the test broker."""
    return Settings.load(environ={}, environment="test", mqtt_port=port, mqtt_tls_ca=str(ca),
                         mqtt_tls_certfile=str(certfile or ""), mqtt_tls_keyfile=str(keyfile or ""),
                         **generate_keys())


def round_trip(settings: Settings) -> bytes:
    """Subscribe and publish through the broker with these settings; return what came back."""
    received: queue.Queue[ReceivedMessage] = queue.Queue()
    client = MqttClient(settings, on_message=received.put)
    client.connect(timeout=5)
    try:
        client.subscribe("tls/check", qos=1)
        client.publish("tls/check", b"over tls", qos=1)
        return received.get(timeout=5).payload
    finally:
        client.disconnect()


def test_a_client_trusting_the_ca_talks_over_tls(tls_broker: tuple[int, int], pki: Pki) -> None:
    """WIFI_CENSUS_MQTT_TLS_CA set: the client connects over TLS, checks the broker, works."""
    assert round_trip(tls_settings(tls_broker[0], pki.ca)) == b"over tls"


def test_a_broker_signed_by_another_ca_is_refused(tls_broker: tuple[int, int], pki: Pki,
                                                   tmp_path: Path) -> None:
    """An impostor broker (certificate from a CA we do not trust) fails the handshake."""
    other = make_pki(tmp_path / "other", name="other-ca")
    with pytest.raises(MqttError, match="TLS handshake"):
        MqttClient(tls_settings(tls_broker[0], other.ca)).connect(timeout=5)


def test_a_plain_client_gets_nothing_from_a_tls_port(tls_broker: tuple[int, int]) -> None:
    """Without the CA setting the client speaks plain MQTT, which a TLS listener never answers."""
    settings = Settings.load(environ={}, environment="test", mqtt_port=tls_broker[0],
                             **generate_keys())
    with pytest.raises(MqttError):
        MqttClient(settings).connect(timeout=2)


def test_a_client_certificate_is_sent_when_configured(tls_broker: tuple[int, int],
                                                      pki: Pki) -> None:
    """A listener that requires client certificates accepts ours and refuses a client without."""
    cert, key = pki.client("collector-1")
    assert round_trip(tls_settings(tls_broker[1], pki.ca, cert, key)) == b"over tls"
    with pytest.raises(MqttError):
        MqttClient(tls_settings(tls_broker[1], pki.ca)).connect(timeout=5)


def test_unreadable_tls_files_are_named(tmp_path: Path, pki: Pki) -> None:
    """A missing CA or key file is an error naming the variable, before any connection."""
    with pytest.raises(MqttError, match="WIFI_CENSUS_MQTT_TLS_CA"):
        MqttClient(tls_settings(1, tmp_path / "missing.crt"))
    cert, _ = pki.client("x")
    with pytest.raises(MqttError, match="WIFI_CENSUS_MQTT_TLS_CERTFILE"):
        MqttClient(tls_settings(1, pki.ca, cert, tmp_path / "missing.key"))


@pytest.mark.parametrize(("environ", "variable"), [
    ({"WIFI_CENSUS_MQTT_TLS_CA": "ca", "WIFI_CENSUS_MQTT_TLS_CERTFILE": "c"},
     "WIFI_CENSUS_MQTT_TLS_KEYFILE"),
    ({"WIFI_CENSUS_MQTT_TLS_CA": "ca", "WIFI_CENSUS_MQTT_TLS_KEYFILE": "k"},
     "WIFI_CENSUS_MQTT_TLS_CERTFILE"),
    ({"WIFI_CENSUS_MQTT_TLS_CERTFILE": "c", "WIFI_CENSUS_MQTT_TLS_KEYFILE": "k"},
     "WIFI_CENSUS_MQTT_TLS_CA"),
])
def test_incomplete_tls_settings_stop_the_start(environ: dict[str, str], variable: str) -> None:
    """A certificate without its key, or without the CA, is refused naming what is missing."""
    with pytest.raises(SettingsError) as caught:
        Settings.load(environ={**environ, "WIFI_CENSUS_ENVIRONMENT": "test"}, **generate_keys())
    assert caught.value.variable == variable
