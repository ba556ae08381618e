"""Everything a portal process talks to, built once per app from the settings."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import Flask, current_app
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from apcommands.outbox import CommandOutbox
from apcommands.sender import ApControl, Publisher
from census.privacy import IdentityCipher
from census.settings import Settings
from portal.alerts import AlertDispatcher
from portal.flow import FlowCodec, PendingStore
from portal.otp import OtpPolicy, OtpService
from portal.ratelimit import RateLimiter
from portal.sessions import ClientSessions
from portal.sms import ConsoleSmsSender, HttpSmsSender, SmsSender
from portal.staff_auth import LoginGuard, LoginPolicy
from registry.db import make_engine, make_session_factory
from registry.directory import ApDirectory

SQLITE_BUSY_TIMEOUT_S = 8.0


class PortalConfigError(ValueError):
    """The settings do not allow the portal to start; the message names the variable."""


@dataclass
class PortalServices:
    """The portal's connections and helpers (one set per app, shared by its threads)."""

    settings: Settings
    redis: redis.Redis
    engine: Engine
    session_factory: sessionmaker[Session]
    cipher: IdentityCipher
    directory: ApDirectory
    publisher: Publisher
    control: ApControl
    outbox: CommandOutbox
    alerts: AlertDispatcher
    otp: OtpService
    limiter: RateLimiter
    sms: SmsSender
    flows: FlowCodec
    pending: PendingStore
    client_sessions: ClientSessions
    login_guard: LoginGuard

    @classmethod
    def build(cls, settings: Settings, sms: SmsSender | None = None,
              rate_limits: dict[str, tuple[int, int]] | None = None,
              login_policy: LoginPolicy | None = None) -> PortalServices:
        """Connect to Redis and the registry and wire the helpers together."""
        if settings.environment == "production" and settings.portal_sms_sender == "console":
            raise PortalConfigError(
                "WIFI_CENSUS_PORTAL_SMS_SENDER=console: codes would only be logged; "
                "use http in production"
            )
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=5,
                                      health_check_interval=30)
        # A sign-in waits at most this long for another SQLite writer, well inside gunicorn's
        # 30 s worker timeout: the resident gets the retry page, not a worker killed mid-request.
        engine = make_engine(settings.database_url, sqlite_busy_timeout_s=SQLITE_BUSY_TIMEOUT_S)
        factory = make_session_factory(engine)
        cipher = IdentityCipher.from_settings(settings)
        directory = ApDirectory(factory, cipher, settings.command_key)
        publisher = Publisher(settings)
        control = ApControl(settings, publisher, directory.key_for)
        prefix = settings.redis_key_prefix
        if sms is None:
            if settings.portal_sms_sender == "http":
                try:
                    sms = HttpSmsSender(settings.portal_sms_url, settings.portal_sms_token)
                except ValueError as error:
                    raise PortalConfigError(str(error)) from None
            else:
                sms = ConsoleSmsSender(client, prefix)
        policy = OtpPolicy(
            ttl=settings.portal_otp_ttl, max_tries=settings.portal_otp_max_tries,
            resend_seconds=settings.portal_otp_resend_seconds,
            daily_per_phone=settings.portal_otp_daily_per_phone,
            daily_per_client=settings.portal_otp_daily_per_ip,
            hourly_per_ap=settings.portal_otp_hourly_per_ap,
        )
        return cls(
            settings=settings, redis=client, engine=engine, session_factory=factory,
            cipher=cipher, directory=directory, publisher=publisher,
            control=control, outbox=CommandOutbox(factory, cipher, control),
            alerts=AlertDispatcher(settings, publisher),
            otp=OtpService(client, prefix, settings.secret_key, policy, settings.timezone),
            limiter=RateLimiter(client, prefix, rate_limits), sms=sms,
            flows=FlowCodec(settings.secret_key),
            pending=PendingStore(client, prefix, cipher),
            client_sessions=ClientSessions(client, prefix),
            login_guard=LoginGuard(client, prefix, login_policy),
        )

    def close(self) -> None:
        """Release connections (tests, shutdown)."""
        self.outbox.stop()
        self.alerts.flush(timeout=5)
        self.publisher.close()
        self.redis.close()
        self.engine.dispose()


def portal_services(app: Flask | None = None) -> PortalServices:
    """The portal services of an app (the current one by default): the one accessor."""
    services: PortalServices = (app or current_app).extensions["portal"]
    return services
