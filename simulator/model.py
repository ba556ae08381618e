"""The simulated world: communities, buildings, units, access points, people, devices.

Plain slotted dataclasses: a district of 41,257 units holds ~100k people and ~250k devices,
so per-object overhead matters. Times are integer milliseconds since the Unix epoch (exact
arithmetic, no float drift), converted to seconds only when written out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from simulator.identities import Identity

# Scenarios: how a unit's true occupancy relates to its registration (docs/simulator.md).
MATCH = "match"
EXTRA_OCCUPANT = "extra_occupant"
FEWER = "fewer"
VACANT = "vacant"
GROUP_RENTAL = "group_rental"
SCENARIOS = (MATCH, EXTRA_OCCUPANT, FEWER, VACANT, GROUP_RENTAL)

# Daily routines.
DAY_WORKER = "day_worker"
NIGHT_SHIFT = "night_shift"
HOMEBODY = "homebody"
IRREGULAR = "irregular"
SCHOOL_CHILD = "school_child"
YOUNG_CHILD = "young_child"
ROLES = (DAY_WORKER, NIGHT_SHIFT, HOMEBODY, IRREGULAR, SCHOOL_CHILD, YOUNG_CHILD)

# Device categories (every device is exactly one of these).
RESIDENT = "resident"
INFRASTRUCTURE = "infrastructure"
VISITOR = "visitor"

# Address behaviours.
FIXED = "fixed"
PER_SSID = "per_ssid"
ROTATING_DAILY = "rotating_daily"
ROTATING_BIWEEKLY = "rotating_biweekly"
# A new randomized address at every connect (Android "non-persistent" randomization): an AP
# reboot makes all such devices on it change address at once.
ROTATING_RECONNECT = "rotating_reconnect"
ADDRESS_MODES = (FIXED, PER_SSID, ROTATING_DAILY, ROTATING_BIWEEKLY, ROTATING_RECONNECT)

# How a device's Wi-Fi follows its owner.
CARRIED = "carried"  # phone, watch: with the owner, associated while the owner is home
SESSIONS = "sessions"  # laptop, tablet: at home, awake only while used
ALWAYS = "always"  # IoT, desktops: on around the clock
WATCHED = "watched"  # TVs that drop Wi-Fi in standby: on while someone watches
# Laptops, tablets and second phones that stay at home: used while the owner is home, asleep
# otherwise, waking for a minute or two now and then, day and night (never leave, never stay).
DOZING = "dozing"


@dataclass(slots=True, eq=False)
class AccessPoint:
    """An access point and the units its signal serves."""

    index: int
    ap_id: str
    community: str
    building: str
    floor: int | None
    unit_code: str  # "" unless coverage is "unit"
    coverage: str  # unit, floor or building
    ssid: str
    sniffer: bool = False
    phase: int = 0  # seconds after each snapshot grid point at which this AP reports
    units: list[Unit] = field(default_factory=list)
    outages: list[tuple[int, int]] = field(default_factory=list)  # ms, filled day by day
    reboots: list[tuple[int, int]] = field(default_factory=list)  # ms (also in outages)


@dataclass(slots=True, eq=False)
class Building:
    """A building of a community."""

    community: str
    community_name: str
    code: str
    name: str
    kind: str  # "highrise" (one AP per unit) or "walkup" (one corridor AP per floor)
    floors: int
    per_floor: int
    units: list[Unit] = field(default_factory=list)
    lobby: AccessPoint | None = None


@dataclass(slots=True, eq=False)
class Unit:
    """A housing unit, its registration and what really happens in it."""

    index: int
    building: Building
    code: str
    ref: str
    floor: int
    position: int  # 1-based place on its floor
    room: str
    area_m2: float
    rented: bool = False
    scenario: str = MATCH
    meter_group: str = ""
    has_gas: bool = True
    heat_metered: bool = False
    home_ap: AccessPoint | None = None  # the AP residents' devices join at home
    home_rssi: tuple[int, int] = (-62, -38)  # range of the home AP's signal in the unit
    occupants: list[Person] = field(default_factory=list)  # people who really live here
    registered: list[Person] = field(default_factory=list)  # registered, living here or not
    former: list[Person] = field(default_factory=list)  # registered once, moved out
    infrastructure: list[Device] = field(default_factory=list)
    regular_visitors: list[Visitor] = field(default_factory=list)
    neighbours: list[Unit] = field(default_factory=list)
    home_at_night: list[int] = field(default_factory=list)  # occupants home at 03:00, per day
    guests_at_night: list[int] = field(default_factory=list)
    moved_in_day: int | None = None  # a group rental whose people all arrive on this day

    @property
    def group_rental(self) -> bool:
        """Whether the unit is a group rental (the ground truth analytics must find)."""
        return self.scenario == GROUP_RENTAL


@dataclass(slots=True, eq=False)
class Person:
    """Someone living in (or registered to) a unit."""

    index: int
    pid: str
    unit: Unit
    identity: Identity
    age: int
    role: str
    lives_here: bool = True
    registered: bool = True
    move_in: dt.date | None = None
    move_out: dt.date | None = None
    devices: list[Device] = field(default_factory=list)
    trips: list[tuple[int, int]] = field(default_factory=list)  # (leaving day, nights away)
    workdays: int = 5  # day workers: 5 (Mon-Fri) or 6 (Mon-Sat)
    shift_cycle: tuple[int, int, int] = (4, 2, 0)  # night shift: nights on, nights off, offset
    overnight_rate: float = 0.005  # chance per night of sleeping elsewhere
    night_wifi_off: bool = False  # switches Wi-Fi (or the phone) off at night
    arrives: int | None = None  # moves in during the period: away until this day's daytime
    # A shift group of a group rental: its members copy the leader's day (index into the
    # world's people), each coming and going within a few minutes of the leader.
    shift_leader: int | None = None
    shift_group: str = ""

    def on_trip(self, boundary: int) -> bool:
        """Whether the person is away on a trip at the start of day ``boundary`` (06:00)."""
        if self.arrives is not None and boundary <= self.arrives:
            return True  # not here yet: the first night home is the night of ``arrives``
        return any(leave < boundary <= leave + nights for leave, nights in self.trips)

    def works_night(self, day: int) -> bool:
        """Whether a night-shift worker works the night that starts on day ``day``."""
        on, off, offset = self.shift_cycle
        return (day + offset) % (on + off) < on


@dataclass(slots=True, eq=False)
class Visitor:
    """Someone from outside who visits units of one community."""

    index: int
    vid: str
    community: str
    devices: list[Device] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class Device:
    """A Wi-Fi device: who it belongs to and the addresses it used, in order."""

    index: int
    did: str
    category: str  # resident, infrastructure or visitor
    kind: str  # phone, laptop, tablet, watch, smart_tv, set_top_box, camera, plug, vacuum
    mode: str  # address behaviour
    follows: str  # CARRIED, SESSIONS, ALWAYS or WATCHED
    owner: Person | Visitor | None
    unit: Unit | None  # home unit (residents, infrastructure); None for visitors
    addresses: list[tuple[str, int, int]] = field(default_factory=list)  # (mac, from ms, to ms)
    rotations: list[int] = field(default_factory=list)  # ms at which the address changes
    rssi_offset: int = 0  # how far from the AP it usually sits (dB)
    bleed_ap: AccessPoint | None = None  # a neighbour's AP it sometimes joins
    probes: bool = False  # sends probe requests that sniffers hear
    probe_days: int = 0  # bit d set: it probed at a sniffer on day d
    reboot_rotates: bool = False  # a new address at each re-join after its AP reboots

    def address_at(self, when_ms: int) -> str:
        """The address the device uses at a moment."""
        for mac, start, end in self.addresses:
            if start <= when_ms < end:
                return mac
        return self.addresses[-1][0] if when_ms >= self.addresses[-1][2] else self.addresses[0][0]

    @property
    def randomizes(self) -> bool:
        """Whether its addresses are locally administered."""
        return self.mode != FIXED


@dataclass(slots=True)
class World:
    """Everything the simulator built, in generation order."""

    communities: list[tuple[str, str]]  # (code, name)
    buildings: list[Building]
    units: list[Unit]
    aps: list[AccessPoint]  # sorted by ap_id; index == position
    people: list[Person]
    visitors: list[Visitor]
    devices: list[Device]
