"""Sign-ins through the portal while `keys rotate --digest` is half done: the registry's rows
and the watchlist are partly under the old digest key, partly under the new one."""

from __future__ import annotations

import dataclasses

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from census.privacy import IdentityCipher
from census.settings import Settings, generate_digest_key
from portal.services import PortalServices
from registry.db import session_scope
from registry.models import IdType, Resident, SignIn, WatchlistEntry
from registry.rotation import rotate_digests
from tests.common import (
    WATCHED_ID,
    ZHANG_ID,
    Place,
    Subscriber,
    hidden,
    page,
    sign_in,
    signed_query,
)

OLD_DIGEST, NEW_DIGEST = generate_digest_key(), generate_digest_key()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The portal mid-rotation: the new digest key, the old one still matched."""
    return dataclasses.replace(settings, digest_key=NEW_DIGEST, digest_keys_previous=OLD_DIGEST)


@pytest.fixture
def cipher(settings: Settings) -> IdentityCipher:
    """The cipher the registry was written with, before the rotation: the old digest key."""
    return IdentityCipher(settings.identity_key, digest_key=OLD_DIGEST)


def test_sign_in_one_tap_and_watchlist_work_half_way_through_a_digest_rotation(
        client: FlaskClient, services: PortalServices, commands: Subscriber, place: Place,
        cipher: IdentityCipher, sqlite_session_factory: sessionmaker[Session]) -> None:
    """张三's row moved to the new key, his watchlist entry and 赵六's still under the old one:
    he signs in as registered and bound, one tap works, and every sign-in hits the list."""
    with session_scope(sqlite_session_factory) as db:
        db.add(WatchlistEntry(id_digest=cipher.digest(IdType.RESIDENT_ID_CARD.value, ZHANG_ID),
                              id_type=IdType.RESIDENT_ID_CARD.value,
                              id_number_encrypted=cipher.encrypt(ZHANG_ID), reason="zhang"))

    def stop(table: str, _last_id: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # the first resident (张三) only
        rotate_digests(sqlite_session_factory, services.cipher, batch_size=1, after_batch=stop)
    new = IdentityCipher(services.settings.identity_key, digest_key=NEW_DIGEST)
    with sqlite_session_factory() as db:
        zhang = db.get(Resident, place.zhang)
        assert zhang is not None
        assert zhang.id_digest == new.digest(IdType.RESIDENT_ID_CARD.value, ZHANG_ID)
        assert set(db.scalars(select(WatchlistEntry.id_digest))) == {
            cipher.digest(IdType.RESIDENT_ID_CARD.value, n) for n in (ZHANG_ID, WATCHED_ID)}

    assert "连接成功" in page(sign_in(client, services))
    commands.get()
    splash = page(client.get("/?" + signed_query()))
    assert "欢迎回来，张*" in splash
    done = client.post("/one-tap", data={"flow": hidden(splash, "flow"), "lang": "zh_CN",
                                         "csrf_token": hidden(splash, "csrf_token")})
    assert "连接成功" in page(done)
    watched = sign_in(client, services, signed_query(mac="02:00:00:00:00:09"),
                      phone="13500135000", name="赵六", id_number=WATCHED_ID,
                      unit=str(place.unit_1502))
    assert "连接成功" in page(watched)
    with sqlite_session_factory() as db:
        rows = [(s.method, s.outcome, s.device_id is not None, s.watchlist_hit)
                for s in db.scalars(select(SignIn).order_by(SignIn.id))]
    assert rows == [("sms", "registered", True, True), ("one_tap", "registered", True, True),
                    ("sms", "self_declared", True, True)]
    with sqlite_session_factory() as db:  # a row written during the rotation: the new key's
        assert db.scalar(select(Resident.id).where(Resident.id_digest == new.digest(
            IdType.RESIDENT_ID_CARD.value, WATCHED_ID))) is not None
