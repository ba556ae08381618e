"""Sending the one-time code by SMS through a pluggable sender.

``ConsoleSmsSender`` is for local use and the demo: it logs the message and keeps the last ones
in a capped Redis list, where a developer (or an end-to-end test) reads the code. It is refused in
production. ``HttpSmsSender`` POSTs JSON to an SMS gateway; a provider with another request
shape gets its own small class with the same ``send`` method.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Protocol

import redis
import requests

from census.channels import RedisKeys
from census.phones import canonical_phone
from census.privacy import mask_phone

LOGGER = logging.getLogger(__name__)
OUTBOX_LENGTH = 200
OUTBOX_TTL_S = 86400


class SmsError(RuntimeError):
    """The message could not be handed to the gateway."""


class SmsSender(Protocol):
    """Anything that can deliver a short text to a mobile number."""

    def send(self, phone: str, text: str, code: str) -> None:
        """Deliver the text or raise SmsError."""


class ConsoleSmsSender:
    """Logs messages and keeps them in a Redis outbox (development and demo only)."""

    def __init__(self, client: redis.Redis, key_prefix: str) -> None:
        self._redis = client
        self.outbox_key = RedisKeys(key_prefix).sms_outbox()
        self.last_key = RedisKeys(key_prefix).sms_last()

    def send(self, phone: str, text: str, code: str) -> None:
        """Log the message and push it to the outbox list."""
        LOGGER.info("SMS to %s: %s", mask_phone(phone), text)
        record = json.dumps({"phone": phone, "text": text, "code": code, "at": time.time()},
                            ensure_ascii=False)
        pipe = self._redis.pipeline(transaction=False)
        pipe.lpush(self.outbox_key, record)
        pipe.ltrim(self.outbox_key, 0, OUTBOX_LENGTH - 1)
        pipe.expire(self.outbox_key, OUTBOX_TTL_S)
        # Newest code per number, for `last_code` without scanning the list.
        pipe.hset(self.last_key, phone, code)
        pipe.expire(self.last_key, OUTBOX_TTL_S)
        pipe.execute()

    def last_code(self, phone: str) -> str | None:
        """The newest code sent to a number, if any (what a developer reads off the console);
        the number in any form (codes go to its E.164 form)."""
        code = self._redis.hget(self.last_key, canonical_phone(phone))
        return None if code is None else bytes(code).decode()  # type: ignore[arg-type]


class HttpSmsSender:
    """POSTs ``{"to", "text", "code"}`` as JSON to a gateway with a bearer token."""

    def __init__(self, url: str, token: str, timeout: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(
                f"WIFI_CENSUS_PORTAL_SMS_URL={url!r}: the http SMS sender needs an http(s) URL"
            )
        self._url = url
        self._timeout = timeout
        self._session = requests.Session()
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

    def send(self, phone: str, text: str, code: str) -> None:
        """POST the message; any non-2xx answer or network error is an SmsError."""
        try:
            response = self._session.post(
                self._url, json={"to": phone, "text": text, "code": code}, timeout=self._timeout
            )
        except requests.RequestException as error:
            raise SmsError(f"SMS gateway unreachable: {error.__class__.__name__}") from None
        if not 200 <= response.status_code < 300:
            raise SmsError(f"SMS gateway answered HTTP {response.status_code}")
        LOGGER.info("SMS to %s handed to gateway", mask_phone(phone))
