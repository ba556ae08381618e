"""Finishing a sign-in: match the identity, bind the device, record, alert, authorize.

Called once the phone number is verified (or for a one-tap sign-in of a known device). The
registry work is one transaction; the AP is told after it commits, so that no device is ever
let through without its sign-in on record.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from apcommands.outbox import enqueue
from apcommands.sender import CommandNotSent
from census.channels import RedisKeys
from census.handshake import HANDSHAKE_SIGNED, fas_auth_url
from census.privacy import IdentityCipher, is_locally_administered, mask_name, pseudonymize_mac
from portal import audit
from portal.const import (
    METHOD_ONE_TAP,
    METHOD_SMS,
    OUTCOME_MISMATCH,
    OUTCOME_REGISTERED,
    OUTCOME_SELF_DECLARED,
    OUTCOME_UNCONFIRMED,
    OUTCOME_VISITOR,
)
from portal.devices import BindResult, Revocation, bind_device, device_label, revoke_all
from portal.flow import FLOW_MAX_AGE_S, Flow
from portal.identity import DeclaredIdentity, match_identity
from portal.services import PortalServices
from registry.db import bump_registry_version, session_scope
from registry.models import (
    Alert,
    Device,
    IdType,
    OutboxCommand,
    Resident,
    SignIn,
    Unit,
    Verification,
    WatchlistEntry,
)

LOGGER = logging.getLogger(__name__)
REGISTRY_RETRY_S = 6.0  # how long a sign-in keeps trying a registry that is away or locked


class NotAuthorized(RuntimeError):
    """The sign-in is recorded but the AP could not be told to let the device through."""


class RegistryUnavailable(RuntimeError):
    """The registry could not record the sign-in (database down or locked); trying the same
    flow again later records it once."""


@dataclass(frozen=True, slots=True)
class SignInResult:
    """What the resident's last page needs to know."""

    signin_id: int
    outcome: str
    greeting: str  # masked name
    session_seconds: int
    fas_url: str | None  # for openNDS FAS: where the browser goes to be let through
    released_devices: int  # devices signed out to stay within the quota


@dataclass(frozen=True, slots=True)
class _Recorded:
    """What the transaction produced, for the steps after commit."""

    signin_id: int
    outcome: str
    greeting: str
    revoked: list[Revocation]
    alert: PendingAlert | None
    pseudonym: str
    one_tap: bool  # bound to a registered resident: may sign in with one tap next time
    # The authorize and the deauthorize commands written into the outbox with the sign-in
    # (none when an earlier try recorded it: that try's rows are the drain's to send).
    authorize: OutboxCommand | None = None
    revoked_commands: tuple[OutboxCommand, ...] = ()


def local_today(services: PortalServices, now: dt.datetime) -> dt.date:
    """The site's local date (move-out dates are local dates)."""
    return now.astimezone(services.settings.tz).date()


@dataclass(frozen=True, slots=True)
class PendingAlert:
    """A watchlist alert to store and publish after the sign-in, off the request path."""

    payload: dict[str, Any]  # the MQTT payload without alert_id and unit reference
    unit_id: int | None
    resident_id: int | None
    at: dt.datetime


def _watchlist_alert(reason: str, signin_id: int, ap_id: str, at: dt.datetime, outcome: str,
                     method: str, resident_id: int | None, unit_id: int | None
                     ) -> PendingAlert:
    """A watchlist alert's payload (ids only, no personal data), to be stored later: writing
    it inside the request made watch-listed sign-ins measurably slower (issue #11 defect 8)."""
    payload: dict[str, Any] = {
        "v": 1, "kind": "watchlist", "signin_id": signin_id, "ap": ap_id, "unit": None,
        "resident_id": resident_id, "outcome": outcome, "method": method, "reason": reason,
        "generated_at": int(at.timestamp()),
    }
    return PendingAlert(payload, unit_id, resident_id, at)


def _store_alert(services: PortalServices, pending: PendingAlert,
                 payload: dict[str, Any]) -> dict[str, Any]:
    """Store a watchlist alert (in the alert thread) and return the payload to publish."""
    with session_scope(services.session_factory) as session:
        unit = session.get(Unit, pending.unit_id) if pending.unit_id is not None else None
        payload = {**payload, "unit": unit.ref if unit else None}
        alert = Alert(kind="watchlist", at=pending.at, unit_id=pending.unit_id,
                      resident_id=pending.resident_id, payload=dict(payload))
        session.add(alert)
        session.flush()
        # A new dict, not the same one mutated: the JSON column only sees a changed value.
        payload["alert_id"] = alert.id
        alert.payload = dict(payload)
    return payload


def raise_sms_budget_alert(services: PortalServices, ap_id: str, now: dt.datetime | None = None
                           ) -> None:
    """Store and publish that an AP used up its hourly SMS budget (codes are refused there
    until the hour ends): most likely SMS pumping through it."""
    moment = now or dt.datetime.now(dt.UTC)
    limit = services.otp.policy.hourly_per_ap
    payload: dict[str, Any] = {
        "v": 1, "kind": "sms_budget", "ap": ap_id, "limit": limit,
        "hour": moment.astimezone(services.settings.tz).strftime("%Y-%m-%dT%H:00"),
        "generated_at": int(moment.timestamp()),
    }
    with session_scope(services.session_factory) as session:
        alert = Alert(kind="sms_budget", at=moment, payload=dict(payload))
        session.add(alert)
        session.flush()
        payload["alert_id"] = alert.id
        alert.payload = dict(payload)
    LOGGER.warning("AP %s used up its SMS budget (%d codes this hour): codes refused there",
                   ap_id, limit)
    services.alerts.dispatch("sms_budget", payload)


def _first_try(services: PortalServices, flow: Flow, now: dt.datetime
               ) -> tuple[dt.datetime, bool]:
    """When this flow first tried to record its sign-in (now, on the first try; one Redis
    round trip) and whether a try came before: that moment, the device and the AP are the
    flow's idempotency key (the registry has no column for one, and needs no migration)."""
    key = RedisKeys(services.settings.redis_key_prefix).flow_first_try(flow.fid)
    earlier = services.redis.set(key, now.isoformat(), nx=True, get=True, ex=FLOW_MAX_AGE_S)
    if earlier is None:
        return now, False
    return dt.datetime.fromisoformat(bytes(earlier).decode()), True  # type: ignore[arg-type]


def _identity_digests(cipher: IdentityCipher, resident: Resident) -> list[str]:
    """A resident's identity digest under every configured digest key (during a digest
    rotation the watchlist entry may be under the other key): the stored one alone otherwise."""
    if not cipher.rotating_digests:
        return [resident.id_digest]
    number = cipher.decrypt(resident.id_number_encrypted)
    return [resident.id_digest, *cipher.digests(resident.id_type.value, number)]


def _earlier_try(session: Session, cipher: IdentityCipher, flow: Flow, pseudonym: str,
                 at: dt.datetime) -> _Recorded | None:
    """The sign-in an earlier try of this flow committed (its answer lost with the connection,
    or the AP not told), or None."""
    signin = session.scalar(select(SignIn).where(
        SignIn.mac_pseudonym == pseudonym, SignIn.ap_id == flow.handshake.ap_id,
        SignIn.at == at).order_by(SignIn.id).limit(1))
    if signin is None:
        return None
    name = cipher.reveal(signin.name_encrypted)
    if not name and signin.resident_id is not None:
        resident = session.get(Resident, signin.resident_id)
        name = cipher.reveal(resident.name_encrypted) if resident else ""
    LOGGER.info("sign-in %s of this flow was already recorded: not recorded again", signin.id)
    return _Recorded(signin.id, signin.outcome, mask_name(name), [], None, pseudonym,
                     signin.outcome == OUTCOME_REGISTERED and signin.device_id is not None)


def _in_registry(attempt: Callable[[bool], _Recorded], retried: bool) -> _Recorded:
    """Run a sign-in's transaction (told whether a try came before), again while the database
    is unreachable or locked, for REGISTRY_RETRY_S; then raise RegistryUnavailable."""
    deadline = time.monotonic() + REGISTRY_RETRY_S
    while True:
        try:
            return attempt(retried)
        except (OperationalError, InterfaceError) as error:
            reason = str(error.orig or error).splitlines()[0][:200]
            if time.monotonic() >= deadline:
                LOGGER.error("sign-in not recorded, the registry is unavailable: %s", reason)
                raise RegistryUnavailable(reason) from None
            LOGGER.warning("registry unavailable, trying the sign-in again: %s", reason)
            retried = True
            time.sleep(0.5)


_SIGNINS = SignIn.metadata.tables[SignIn.__tablename__]
_INSERT_SIGNIN = insert(_SIGNINS).returning(_SIGNINS.c.id)


def _record_full(services: PortalServices, flow: Flow, declared: DeclaredIdentity,
                 user_agent: str, remote_ip: str, locale: str, now: dt.datetime,
                 retried: bool) -> _Recorded:
    """The registry transaction of a full (SMS-verified) sign-in.

    The common path is five statements built once and run through Core (identity and
    watchlist, the resident's devices, the device, the sign-in, the audit entry); the ORM is
    used only for the rare rows (a self-declared resident, an alert).
    """
    hs = flow.handshake
    cipher = services.cipher
    pseudonym = pseudonymize_mac(hs.mac, services.settings.pseudonym_key)
    label = device_label(user_agent)
    allowed_units = {u.id for u in services.directory.units_for(hs.ap_id)}
    with session_scope(services.session_factory) as session:
        earlier = _earlier_try(session, services.cipher, flow, pseudonym, now) if retried else None
        if earlier is not None:
            return earlier
        connection = session.connection()
        match = match_identity(session, cipher, declared, local_today(services, now))
        resident_id: int | None = None
        unit_id = declared.unit_id
        bind: BindResult | None = None
        if match.registered:
            assert match.resident is not None
            resident_id, unit_id, outcome = (match.resident.id, match.resident.unit_id,
                                             OUTCOME_REGISTERED)
        elif match.unconfirmed:
            # A resident with no phone on file: the verified number proves only that the
            # claimant holds *a* phone. Recorded against the resident for staff to confirm,
            # never bound, and the registry's phone stays empty.
            outcome = OUTCOME_UNCONFIRMED
        elif match.resident is not None:
            # Known identity whose name or phone disagree (or who moved out): recorded for
            # the back office, never bound, and the page looks the same as any other.
            outcome = OUTCOME_MISMATCH
        elif declared.unit_id is not None and declared.unit_id in allowed_units:
            resident = Resident(
                unit_id=declared.unit_id, id_type=IdType(declared.id_type),
                id_number_encrypted=cipher.encrypt(declared.id_number),
                id_digest=match.digest, id_last4=declared.id_number[-4:],
                **cipher.person_columns(declared.name, declared.phone),
                move_in=local_today(services, now), verification=Verification.SELF_DECLARED,
            )
            session.add(resident)
            bump_registry_version(session)
            session.flush()
            resident_id, outcome = resident.id, OUTCOME_SELF_DECLARED
        else:
            outcome = OUTCOME_VISITOR
        if resident_id is not None:
            # Only an address the AP vouched for (signed redirect) is bound: a FAS hand-over's
            # MAC is anyone's claim, and a binding is what one-tap sign-in and analytics rest on.
            if hs.kind == HANDSHAKE_SIGNED:
                bind = bind_device(connection, cipher, resident_id, hs.mac, pseudonym,
                                   is_locally_administered(hs.mac), label, hs.ap_id,
                                   services.settings.portal_device_quota, now)
        elif unit_id is not None and unit_id not in allowed_units:
            unit_id = None
        matched_id = match.resident.id if match.resident is not None else None
        signin_id = connection.execute(_INSERT_SIGNIN, {
            "at": now, "ap_id": hs.ap_id, "handshake": hs.kind, "method": METHOD_SMS,
            "outcome": outcome, "mac_pseudonym": pseudonym,
            "randomized": is_locally_administered(hs.mac), "resident_id": matched_id,
            "device_id": bind.device_id if bind else None, "unit_id": unit_id,
            **cipher.person_columns(declared.name, declared.phone),
            "id_type": declared.id_type,
            "id_number_encrypted": cipher.encrypt(declared.id_number),
            "id_digest": match.digest, "id_last4": declared.id_number[-4:],
            "watchlist_hit": match.watchlist is not None,
            "consent_version": declared.consent_version, "locale": locale,
            "client_ip": hs.client_ip, "device_label": label,
            "rebound_from_device_id": bind.rebound_from_id if bind else None,
        }).scalar_one()
        alert = None
        if match.watchlist is not None:
            alert = _watchlist_alert(match.watchlist.reason, signin_id, hs.ap_id, now, outcome,
                                     METHOD_SMS, matched_id, unit_id)
        audit.write(connection, "resident", "sign_in", f"signin:{signin_id}",
                    {"outcome": outcome, "ap": hs.ap_id, "method": METHOD_SMS,
                     "handshake": hs.kind}, remote_ip)
        revoked = bind.revoked if bind else []
        return _Recorded(signin_id, outcome, mask_name(declared.name), revoked, alert,
                         pseudonym, bind is not None and outcome == OUTCOME_REGISTERED,
                         _queue_authorize(connection, services, flow, now),
                         queue_revocations(connection, services, revoked, now))


def _record_one_tap(services: PortalServices, flow: Flow, device_id: int, user_agent: str,
                    remote_ip: str, locale: str, now: dt.datetime, retried: bool) -> _Recorded:
    """The registry transaction of a one-tap sign-in of a known device."""
    hs = flow.handshake
    pseudonym = pseudonymize_mac(hs.mac, services.settings.pseudonym_key)
    with session_scope(services.session_factory) as session:
        earlier = _earlier_try(session, services.cipher, flow, pseudonym, now) if retried else None
        if earlier is not None:
            return earlier
        device = session.get(Device, device_id)
        if device is None or device.revoked_at is not None or device.mac_pseudonym != pseudonym:
            raise LookupError("device is no longer bound")
        resident = device.resident
        if resident.verification is not Verification.REGISTERED:
            raise LookupError("one tap is for registered residents only")
        device.last_seen_at = now
        device.ap_id = hs.ap_id
        outcome = OUTCOME_REGISTERED
        watch = session.scalar(select(WatchlistEntry).where(
            WatchlistEntry.id_digest.in_(_identity_digests(services.cipher, resident))))
        signin = SignIn(
            at=now, ap_id=hs.ap_id, handshake=hs.kind, method=METHOD_ONE_TAP, outcome=outcome,
            mac_pseudonym=pseudonym, randomized=device.randomized, resident_id=resident.id,
            device_id=device.id, unit_id=resident.unit_id, watchlist_hit=watch is not None,
            locale=locale, client_ip=hs.client_ip,
            device_label=device.label or device_label(user_agent),
        )
        session.add(signin)
        session.flush()
        alert = None
        if watch is not None:
            alert = _watchlist_alert(watch.reason, signin.id, signin.ap_id, signin.at,
                                     signin.outcome, signin.method, resident.id,
                                     resident.unit_id)
        audit.record(session, "resident", "sign_in", f"signin:{signin.id}",
               {"outcome": outcome, "ap": hs.ap_id, "method": METHOD_ONE_TAP,
                "handshake": hs.kind}, remote_ip)
        return _Recorded(signin.id, outcome,
                         mask_name(services.cipher.reveal(resident.name_encrypted)), [], alert,
                         pseudonym, True, _queue_authorize(session, services, flow, now))


def _queue_authorize(connection: Connection | Session, services: PortalServices, flow: Flow,
                     now: dt.datetime) -> OutboxCommand | None:
    """Write the sign-in's authorize into the outbox, in its transaction (signed redirects
    only: a FAS hand-over lets the device through by the browser's redirect)."""
    hs = flow.handshake
    if hs.kind != HANDSHAKE_SIGNED:
        return None
    return enqueue(connection, services.cipher, "authorize", hs.ap_id, hs.mac,
                   services.settings.portal_session_seconds, now)


def queue_revocations(connection: Connection | Session, services: PortalServices,
                      revoked: list[Revocation], now: dt.datetime
                      ) -> tuple[OutboxCommand, ...]:
    """Write a deauthorize per ended binding into the outbox, in the caller's transaction."""
    return tuple(enqueue(connection, services.cipher, "deauthorize", item.ap_id, item.mac, 0,
                         now) for item in revoked if item.ap_id)


def send_revocations(services: PortalServices, revoked: list[Revocation],
                     queued: tuple[OutboxCommand, ...]) -> int:
    """End ended bindings' sessions and send their deauthorize commands (queued in the
    outbox by queue_revocations); return how many the broker took now (the drain sends the
    rest when it can)."""
    for item in revoked:
        pseudonym = pseudonymize_mac(item.mac, services.settings.pseudonym_key)
        services.client_sessions.end(pseudonym)
        services.client_sessions.forget_known(pseudonym)
    sent = 0
    for row in queued:
        try:
            services.outbox.send(row)
            sent += 1
        except CommandNotSent:
            LOGGER.error("deauthorize %s not sent yet: the outbox sends it later", row.id)
    return sent


def _finish(services: PortalServices, flow: Flow, recorded: _Recorded,
            landing_url: str) -> SignInResult:
    """After commit: revoke, authorize on the AP, note the session, raise the alert."""
    hs = flow.handshake
    seconds = services.settings.portal_session_seconds
    if recorded.alert is not None:
        # Stored and published by the alert thread: the sign-in row's watchlist_hit is the
        # durable record, and the request costs the same as any other.
        services.alerts.dispatch("watchlist", recorded.alert.payload,
                                 store=functools.partial(_store_alert, services, recorded.alert))
    send_revocations(services, recorded.revoked, recorded.revoked_commands)
    fas_url = None
    if hs.kind == HANDSHAKE_SIGNED:
        try:
            if recorded.authorize is not None:
                services.outbox.send(recorded.authorize)
            else:  # a retry of a recorded sign-in: its own row is the drain's by now
                services.control.authorize(hs.ap_id, hs.mac, seconds)
        except CommandNotSent as error:
            raise NotAuthorized(str(error)) from None
    else:
        key = services.directory.key_for(hs.ap_id) or services.settings.command_key
        fas_url = fas_auth_url(hs, key, landing_url)
    services.client_sessions.start(
        hs.ap_id, hs.client_ip, recorded.pseudonym, seconds,
        known_for=services.settings.portal_reverify_days * 86400 if recorded.one_tap else 0,
        forget=(services.pending.key(flow.fid), services.pending.draft_key(flow.fid)))
    return SignInResult(recorded.signin_id, recorded.outcome, recorded.greeting, seconds,
                        fas_url, sum(1 for r in recorded.revoked if r.reason == "quota"))


def complete_sign_in(services: PortalServices, flow: Flow, declared: DeclaredIdentity,
                     user_agent: str, remote_ip: str, locale: str, landing_url: str,
                     now: dt.datetime | None = None) -> SignInResult:
    """Record a verified sign-in and let the device through."""
    moment, retried = _first_try(services, flow, now or dt.datetime.now(dt.UTC))
    recorded = _in_registry(lambda again: _record_full(services, flow, declared, user_agent,
                                                       remote_ip, locale, moment, again),
                            retried)
    return _finish(services, flow, recorded, landing_url)  # also deletes the pending identity


def complete_one_tap(services: PortalServices, flow: Flow, device_id: int, user_agent: str,
                     remote_ip: str, locale: str, landing_url: str,
                     now: dt.datetime | None = None) -> SignInResult:
    """Record a one-tap sign-in of a known device and let it through."""
    moment, retried = _first_try(services, flow, now or dt.datetime.now(dt.UTC))
    recorded = _in_registry(lambda again: _record_one_tap(services, flow, device_id,
                                                          user_agent, remote_ip, locale, moment,
                                                          again), retried)
    return _finish(services, flow, recorded, landing_url)


def move_out(services: PortalServices, resident_id: int, when: dt.date, actor: str,
             client_ip: str = "") -> int:
    """Record a resident's move-out and revoke every device; return deauthorize commands sent."""
    now = dt.datetime.now(dt.UTC)
    with session_scope(services.session_factory) as session:
        resident = session.get(Resident, resident_id)
        if resident is None:
            raise LookupError(f"no resident {resident_id}")
        resident.move_out = when
        revoked = revoke_all(session, services.cipher, resident, "moved_out", now)
        queued = queue_revocations(session, services, revoked, now)
        bump_registry_version(session)
        audit.record(session, actor, "move_out", f"resident:{resident_id}",
               {"move_out": when.isoformat(), "devices_revoked": len(revoked)}, client_ip)
    return send_revocations(services, revoked, queued)


def confirm_phone(session_factory: sessionmaker[Session], signin_id: int, actor: str,
                  client_ip: str = "", cipher: IdentityCipher | None = None) -> int:
    """Make an unconfirmed sign-in's verified phone its resident's (staff saw the person and
    their document); return the resident id. Refused unless the resident still has none."""
    with session_scope(session_factory) as session:
        signin = session.get(SignIn, signin_id)
        if (signin is None or signin.outcome != OUTCOME_UNCONFIRMED
                or not signin.phone_encrypted):
            raise LookupError(f"sign-in {signin_id} is not an unconfirmed sign-in with a phone")
        resident = session.get(Resident, signin.resident_id) if signin.resident_id else None
        if resident is None:
            raise LookupError(f"sign-in {signin_id} has no resident any more")
        if resident.phone_digest:
            raise LookupError(f"resident {resident.id} already has a phone on file")
        # The sign-in's token and digest are the resident's now: nothing is decrypted, unless
        # a digest rotation runs (the sign-in's digest may be under the old key, and the
        # resident's row may have been passed already).
        phone_digest = signin.phone_digest
        if cipher is not None and cipher.rotating_digests:
            phone_digest = cipher.phone_digest(cipher.decrypt(signin.phone_encrypted))
        resident.phone_encrypted, resident.phone_digest = signin.phone_encrypted, phone_digest
        bump_registry_version(session)
        audit.record(session, actor, "confirm_phone", f"resident:{resident.id}",
                     {"signin": signin_id}, client_ip)
        return resident.id
