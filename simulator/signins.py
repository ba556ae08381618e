"""Residents signing in on the captive portal, as their phones would, over HTTP.

A visitor is a registered resident of the simulated community standing in their own unit: the
AP there redirects the phone to the portal with a signed redirect (the agent's job on a real
AP), the resident fills in name, identity document and mobile number, types the code the SMS
brings (read here from the console sender's outbox), and the portal authorizes the device.
The demo uses it to send real sign-ins through a running portal.
"""

from __future__ import annotations

import csv
import html
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import requests

from census.handshake import sign_redirect

_HIDDEN = re.compile(r'name="(flow|lang|csrf_token)" type="hidden" value="([^"]*)"')
_OPTION = re.compile(r'<option value="([^"]*)"[^>]*>([^<]*)</option>')
SIGNED_IN_TEXT = "连接成功"  # the last page's heading in the default language


@dataclass(frozen=True, slots=True)
class Visitor:
    """A registered resident with a phone, at the AP of their unit."""

    name: str
    id_type: str
    id_number: str
    phone: str
    unit: str  # the unit as the form's list shows it: its room number, else its code
    ap_id: str
    mac: str  # a private (locally administered) address, as phones use per network
    ip: str


@dataclass(frozen=True, slots=True)
class SignInOutcome:
    """How far a sign-in got: ``done``, or the step that failed and why."""

    visitor: Visitor
    step: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True when the portal showed the signed-in page."""
        return self.step == "done"


def pick_visitors(community_dir: Path, count: int, seed: int) -> list[Visitor]:
    """count residents (still living there) of units that have their own AP, reproducibly."""
    unit_aps: dict[tuple[str, str, str], str] = {}
    with (community_dir / "aps.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["coverage"] == "unit":
                unit_aps[(row["community"], row["building"], row["unit"])] = row["ap_id"]
    rooms: dict[tuple[str, str, str], str] = {}
    with (community_dir / "units.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            key = (row["community"], row["building"], row["unit"])
            rooms[key] = row.get("room") or row["unit"]
    candidates = []
    with (community_dir / "residents.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            ap_id = unit_aps.get((row["community"], row["building"], row["unit"]))
            if ap_id and not row["move_out"] and row["phone"]:
                place = (row["community"], row["building"], row["unit"])
                candidates.append((row, ap_id, rooms.get(place, row["unit"])))
    rng = random.Random(seed)
    chosen = rng.sample(candidates, min(count, len(candidates)))
    visitors = []
    for index, (row, ap_id, unit_label) in enumerate(chosen):
        octets = [0x02 | (rng.randrange(256) & 0xFC)] + [rng.randrange(256) for _ in range(5)]
        visitors.append(Visitor(
            name=row["name"], id_type=row["id_type"], id_number=row["id_number"],
            phone=row["phone"], unit=unit_label, ap_id=ap_id,
            mac=":".join(f"{octet:02x}" for octet in octets),
            ip=f"10.{(index >> 8) & 0xFF}.{index & 0xFF}.23",
        ))
    return visitors


def sign_in(portal_url: str, visitor: Visitor, redirect_key: str,
            code_for: Callable[[str], str | None], timeout: float = 10.0) -> SignInOutcome:
    """Walk one visitor through redirect -> mobile number -> SMS code -> identity -> signed
    in."""
    query = sign_redirect(redirect_key, visitor.ap_id, visitor.mac, visitor.ip,
                          gw="10.0.0.1:2050", url="http://example.com/")
    headers = {"Accept-Language": "zh-CN,zh;q=0.9"}
    try:
        splash = requests.get(f"{portal_url}/?{urlencode(query)}", headers=headers,
                              timeout=timeout)
        if splash.status_code != 200:
            return SignInOutcome(visitor, "splash", f"HTTP {splash.status_code}")
        code_page = requests.post(f"{portal_url}/signin", headers=headers, timeout=timeout,
                                  data={**_hidden(splash.text), "phone": visitor.phone,
                                        "consent": "y"})
        code = code_for(visitor.phone)
        if code_page.status_code != 200 or code is None:
            return SignInOutcome(visitor, "signin", f"HTTP {code_page.status_code}, "
                                                    f"code {'sent' if code else 'not sent'}")
        identity = requests.post(f"{portal_url}/verify",
                                 data={**_hidden(code_page.text), "code": code},
                                 headers=headers, timeout=timeout)
        if identity.status_code != 200 or 'name="id_number"' not in identity.text:
            return SignInOutcome(visitor, "verify", f"HTTP {identity.status_code}")
        options = {html.unescape(label): value
                   for value, label in _OPTION.findall(identity.text)}
        done = requests.post(f"{portal_url}/identity", headers=headers, timeout=timeout, data={
            **_hidden(identity.text), "name": visitor.name, "id_type": visitor.id_type,
            "id_number": visitor.id_number, "unit": options.get(visitor.unit, "")})
    except requests.RequestException as error:
        return SignInOutcome(visitor, "http", str(error)[:200])
    if done.status_code != 200 or SIGNED_IN_TEXT not in done.text:
        return SignInOutcome(visitor, "identity", f"HTTP {done.status_code}")
    return SignInOutcome(visitor, "done")


def _hidden(page: str) -> dict[str, str]:
    """The hidden fields of a page (flow, language, CSRF token)."""
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(page)}
