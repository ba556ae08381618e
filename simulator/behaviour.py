"""One simulated day: where everybody is, and which AP each device is associated with.

A day runs 06:00 to 06:00 local. Everything that could cross the boundary is decided by a
*boundary state* per person (home, on a trip, on a night shift, sleeping elsewhere) that the
day before sets and the day after starts from, and by device properties that do not change
from day to day (an IoT plug is always on, a phone whose owner switches Wi-Fi off at night is
off at 06:00 every day). Random things that happen during a day (dropouts, a spell on a
neighbour's AP, an address rotation, an AP outage) are kept clear of the boundary. So a device
associated at the end of one day is associated, to the same AP under the same address, at the
start of the next, and the stream can be produced one day at a time in bounded memory.

Times inside a day are integer milliseconds from the day's start.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from simulator.config import Day, SimulationConfig
from simulator.macs import AddressAllocator
from simulator.model import (
    ALWAYS,
    CARRIED,
    DAY_WORKER,
    DOZING,
    GROUP_RENTAL,
    HOMEBODY,
    IRREGULAR,
    NIGHT_SHIFT,
    ROTATING_RECONNECT,
    SCHOOL_CHILD,
    SESSIONS,
    WATCHED,
    YOUNG_CHILD,
    AccessPoint,
    Device,
    Person,
    Unit,
    Visitor,
    World,
)
from simulator.rng import Rng

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
NIGHT_CHECK = 21 * HOUR  # 03:00 local: when "who sleeps here" is counted for the truth

HOME = "home"
TRIP = "trip"
SHIFT = "shift"
OVERNIGHT = "overnight"

CONNECT = 1  # segment flag: the association starts here (a connect event)
DISCONNECT = 2  # segment flag: the association ends here (a disconnect event)

Interval = tuple[int, int]
# (start, end, mac, rssi, flags, device index); start/end in ms from the day's start.
Segment = tuple[int, int, str, int, int, int]


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """The union of intervals, sorted, touching ones joined."""
    result: list[Interval] = []
    for start, end in sorted(intervals):
        if end <= start:
            continue
        if result and start <= result[-1][1]:
            if end > result[-1][1]:
                result[-1] = (result[-1][0], end)
        else:
            result.append((start, end))
    return result


def complement(intervals: list[Interval], length: int) -> list[Interval]:
    """The parts of [0, length) not covered by sorted, disjoint intervals."""
    result: list[Interval] = []
    cursor = 0
    for start, end in intervals:
        if start > cursor:
            result.append((cursor, start))
        cursor = max(cursor, end)
    if cursor < length:
        result.append((cursor, length))
    return result


def intersect(first: list[Interval], second: list[Interval]) -> list[Interval]:
    """The intersection of two sorted, disjoint interval lists."""
    result: list[Interval] = []
    i = j = 0
    while i < len(first) and j < len(second):
        start = max(first[i][0], second[j][0])
        end = min(first[i][1], second[j][1])
        if start < end:
            result.append((start, end))
        if first[i][1] < second[j][1]:
            i += 1
        else:
            j += 1
    return result


def subtract(intervals: list[Interval], holes: list[Interval]) -> list[Interval]:
    """Sorted, disjoint intervals minus sorted, disjoint holes."""
    return intersect(intervals, complement(merge(holes), max((e for _, e in intervals),
                                                             default=0)))


def covers(intervals: list[Interval], moment: int) -> bool:
    """Whether a moment lies inside one of the intervals."""
    return any(start <= moment < end for start, end in intervals)


@dataclass(slots=True)
class PersonDay:
    """Where one person was during a day."""

    home: list[Interval]
    departures: list[int]
    arrivals: list[int]


@dataclass(slots=True)
class DayActivity:
    """What a day produced, for the event stream, the utilities and the truth."""

    day: Day
    segments: list[list[Segment]]  # per AP index
    probes: list[list[tuple[int, list[tuple[int, str, int, str]]]]]  # per AP: (ms, events)
    outages: list[Interval | None]  # per AP index
    home_hours: list[float] = field(default_factory=list)  # per unit: person-hours at home


def _u(rng: Rng, low_h: float, high_h: float) -> int:
    """A uniform time between two hour marks, in ms."""
    return int(rng.uniform(low_h, high_h) * HOUR)


class DayEngine:
    """Runs the days of a world in order, carrying boundary state from one to the next."""

    def __init__(self, world: World, config: SimulationConfig) -> None:
        self.world = world
        self.config = config
        first = Rng(config.seed, "boundary", 0)
        self.state = [self._boundary(p, 0, first) if p.lives_here else HOME for p in world.people]
        # Overnight guests staying into the next day: unit index -> (visitor, leaves at ms).
        self.guests: dict[int, tuple[Visitor, int]] = {}
        self.pools: dict[str, list[Visitor]] = {}
        self.probe_addresses = AddressAllocator(config.seed)
        self._today_workday: dict[int, bool] = {}
        self._reboots: dict[int, Interval] = {}  # AP index -> (down, up), today
        for visitor in world.visitors:
            self.pools.setdefault(visitor.community, []).append(visitor)

    # --- people ----------------------------------------------------------------------------

    def _boundary(self, person: Person, boundary: int, rng: Rng) -> str:
        """Where a person is at 06:00 starting day ``boundary``."""
        if person.on_trip(boundary):
            return TRIP
        if person.role == NIGHT_SHIFT and person.works_night(boundary - 1):
            return SHIFT
        if rng.chance(person.overnight_rate):
            return OVERNIGHT
        return HOME

    def person_day(self, person: Person, day: Day, rng: Rng) -> PersonDay:
        """A person's home intervals, departures and arrivals, and the next boundary state."""
        length = day.length * 1000
        before = self.state[person.index]
        after = self._boundary(person, day.index + 1, rng)
        self.state[person.index] = after
        if before == TRIP and after == TRIP:
            return PersonDay([], [], [])
        away: list[Interval] = []
        if before != HOME:
            back = {SHIFT: (1.75, 3.0), OVERNIGHT: (1.5, 4.0), TRIP: (4.0, 14.0)}[before]
            away.append((0, _u(rng, *back)))
        if after != HOME:
            leave = {SHIFT: (13.0, 14.5), OVERNIGHT: (13.0, 16.0), TRIP: (1.5, 14.0)}[after]
            away.append((_u(rng, *leave), length))
        away.extend(self._routine(person, day, rng))
        away = merge((max(0, s), min(length, e)) for s, e in away)
        # Popping out for a few minutes does not count as leaving; nor does a very short stop.
        away = [(s, e) for s, e in away if e - s >= 10 * MINUTE or s == 0 or e == length]
        home = [(s, e) for s, e in complement(away, length)
                if e - s >= 3 * MINUTE or s == 0 or e == length]
        away = complement(home, length)
        return PersonDay(home, [s for s, _ in away if s > 0], [e for _, e in away if e < length])

    @staticmethod
    def follow(plan: PersonDay, length: int, rng: Rng) -> PersonDay:
        """A shift-group member's day: the leader's, each coming and going up to 3 min apart."""
        spread = 3 * MINUTE
        home: list[Interval] = []
        for start, end in plan.home:
            if start > 0:
                start = max(1, start + rng.randint(-spread, spread))
            if end < length:
                end = min(length - 1, end + rng.randint(-spread, spread))
            if end - start >= MINUTE:
                home.append((start, end))
        home = merge(home)
        away = complement(home, length)
        return PersonDay(home, [s for s, _ in away if s > 0], [e for _, e in away if e < length])

    def _routine(self, person: Person, day: Day, rng: Rng) -> list[Interval]:
        """The outings of an ordinary day for the person's role (ms from 06:00)."""
        role, weekday = person.role, day.weekday
        outings: list[Interval] = []

        def outing(start: tuple[float, float], hours: tuple[float, float],
                   latest: float = 17.5) -> None:
            """Add an outing that ends by ``latest`` hours after 06:00."""
            begin = _u(rng, *start)
            outings.append((begin, min(begin + _u(rng, *hours), int(latest * HOUR))))

        if role == DAY_WORKER:
            if weekday < person.workdays:
                leave, back = _u(rng, 1.0, 2.75), _u(rng, 11.0, 14.0)
                outings.append((leave, back))
                if rng.chance(0.2):
                    start = back + _u(rng, 0.5, 2.0)
                    outings.append((start, min(start + _u(rng, 1.0, 3.0), int(17.5 * HOUR))))
            else:
                for _ in range(rng.randint(0, 2)):
                    outing((3.0, 14.0), (1.0, 4.0), latest=17.0)
        elif role == NIGHT_SHIFT:
            if rng.chance(0.3):
                outing((7.0, 10.0), (1.0, 2.5))
        elif role in (HOMEBODY, YOUNG_CHILD):
            if rng.chance(0.7):
                outing((1.5, 5.0), (0.5, 2.0))
            if rng.chance(0.5):
                outing((8.0, 11.0), (1.0, 2.0))
        elif role == SCHOOL_CHILD:
            if weekday < 5:
                outings.append((_u(rng, 1.5, 2.0), _u(rng, 10.5, 11.5)))
            elif rng.chance(0.6):
                outing((3.0, 10.0), (2.0, 5.0))
        elif role == IRREGULAR:
            for _ in range(rng.randint(1, 3)):
                outing((2.0, 16.0), (1.0, 5.0))
        return outings

    # --- devices ---------------------------------------------------------------------------

    def _on_intervals(self, device: Device, owner_home: list[Interval],
                      anyone_home: list[Interval], length: int, rng: Rng) -> list[Interval]:
        """When a device is awake with Wi-Fi on and in range of its home AP."""
        if device.follows == ALWAYS:
            on = [(0, length)]
            if rng.chance(0.3):
                start = _u(rng, 1.0, 23.0)
                on = subtract(on, [(start, start + rng.randint(10 * SECOND, 5 * MINUTE))])
            return on
        if device.follows == DOZING and device.index % 2 == 0:
            # Network standby (TVs, many tablets, modern laptops): stays associated while
            # anyone is home and all night, dropped now and then by the AP's idle timeout.
            on = merge([*anyone_home, (18 * HOUR, length)])
            drops: list[Interval] = []
            for _ in range(rng.randint(1, 3)):
                at = _u(rng, 1.0, 17.0)
                drops.append((at, at + rng.randint(10 * MINUTE, 50 * MINUTE)))
            return subtract(on, drops)
        if device.follows == DOZING:
            # Used while the owner is home; asleep otherwise, but waking for a minute or two
            # every 15-60 minutes (background sync), day and night: it never leaves.
            used: list[Interval] = []
            if rng.chance(0.5):
                start = _u(rng, 12.0, 16.0)
                used.append((start, start + _u(rng, 0.5, 2.5)))
            moment = rng.randint(0, 30 * MINUTE)
            while moment < length - 5 * MINUTE:
                used.append((moment, moment + rng.randint(MINUTE, 4 * MINUTE)))
                moment += rng.randint(15 * MINUTE, 60 * MINUTE)
            return merge((s, min(e, length)) for s, e in
                         [*intersect(used[:1], owner_home), *used[1:]])
        if device.follows == WATCHED:
            start = _u(rng, 12.5, 15.0)
            return intersect([(start, start + _u(rng, 1.0, 3.0))], anyone_home)
        if device.follows == SESSIONS:
            sessions: list[Interval] = []
            if device.kind == "laptop":
                if rng.chance(0.75):
                    start = _u(rng, 13.0, 15.5)
                    sessions.append((start, start + _u(rng, 1.0, 3.5)))
                    if isinstance(device.owner, Person) and not self._workday(device.owner):
                        start = _u(rng, 3.0, 9.0)
                        sessions.append((start, start + _u(rng, 1.0, 4.0)))
            elif rng.chance(0.6):
                child = isinstance(device.owner, Person) and device.owner.age < 18
                start = _u(rng, 10.5, 13.0) if child else _u(rng, 12.0, 16.0)
                sessions.append((start, start + _u(rng, 0.5, 2.0)))
            return intersect(merge((s, min(e, 23 * HOUR)) for s, e in sessions), owner_home)
        # Carried: with the owner; a watch only while worn, not on its charger overnight.
        on = owner_home
        if device.kind == "watch":
            on = intersect(on, [(1 * HOUR, int(16.5 * HOUR))])
        elif isinstance(device.owner, Person) and device.owner.night_wifi_off:
            on = intersect(on, [(HOUR // 2, int(17.5 * HOUR))])
        rate = 0.2 if device.kind == "watch" else 0.08  # Wi-Fi dropouts per hour
        holes: list[Interval] = []
        for start, end in on:
            if end - start < 15 * MINUTE:
                continue
            for _ in range(rng.poisson(rate * (end - start) / HOUR)):
                at = rng.randint(start + MINUTE, end - 11 * MINUTE)
                holes.append((at, at + rng.randint(20 * SECOND, 10 * MINUTE)))
        return subtract(on, holes) if holes else on

    def _workday(self, person: Person) -> bool:
        """Whether today is a working day for the person (set per day in run_day)."""
        return self._today_workday.get(person.index, True)

    # --- the day ---------------------------------------------------------------------------

    def run_day(self, day: Day) -> DayActivity:
        """Everything that happens on one day."""
        world, config = self.world, self.config
        rng = Rng(config.seed, "day", day.index)
        length = day.length * 1000
        segments: list[list[Segment]] = [[] for _ in world.aps]
        probes: list[list[tuple[int, list[tuple[int, str, int, str]]]]] = [[] for _ in world.aps]
        home_hours = [0.0] * len(world.units)
        self._today_workday = {}
        self._reboots = self._reboot_plan(day)
        busy: dict[int, list[Interval]] = {}
        guests_next: dict[int, tuple[Visitor, int]] = {}
        day_start_ms = day.start * 1000
        for unit in world.units:
            plans: list[tuple[Person, PersonDay]] = []
            led: dict[int, PersonDay] = {}  # shift-group leaders' days, by person index
            for person in unit.occupants:
                self._today_workday[person.index] = (
                    day.weekday < person.workdays if person.role == DAY_WORKER else day.weekday < 5)
                leader = person.shift_leader
                if leader is not None and leader in led:
                    plan = self.follow(led[leader], length, rng)
                    self.state[person.index] = self.state[leader]
                else:
                    plan = self.person_day(person, day, rng)
                if person.shift_group and leader is None:
                    led[person.index] = plan
                plans.append((person, plan))
                home_hours[unit.index] += sum(e - s for s, e in plan.home) / HOUR
            anyone_home = merge(iv for _, plan in plans for iv in plan.home)
            unit.home_at_night.append(sum(covers(plan.home, NIGHT_CHECK) for _, plan in plans))
            carried = []  # (device, on intervals, plan) for transits
            for person, plan in plans:
                if person.arrives is not None and day.index < person.arrives:
                    continue  # not moved in yet: their devices, even those left home, are elsewhere
                for device in person.devices:
                    on = self._on_intervals(device, plan.home, anyone_home, length, rng)
                    self._place(device, unit, on, day, rng, segments, day_start_ms)
                    if device.follows == CARRIED:
                        carried.append((device, plan))
            for device in unit.infrastructure:
                on = self._on_intervals(device, [], anyone_home, length, rng)
                self._place(device, unit, on, day, rng, segments, day_start_ms)
            guests = self._visits(unit, day, rng, anyone_home, busy, guests_next, segments,
                                  probes, home_hours)
            unit.guests_at_night.append(guests)
            for device, plan in carried:
                self._transits(device, unit, plan.departures, plan.arrivals, day, rng,
                               segments, probes)
        self.guests = guests_next
        outages = self._outages(day, segments)
        return DayActivity(day, segments, probes, outages, home_hours)

    def _place(self, device: Device, unit: Unit, on: list[Interval], day: Day, rng: Rng,
               segments: list[list[Segment]], day_start_ms: int) -> None:
        """Turn a device's on-intervals at home into AP segments (bleed, rotations, RSSI)."""
        ap = unit.home_ap
        if ap is None or not on:
            return
        length = day.length * 1000
        low, high = unit.home_rssi
        rssi = max(-95, rng.randint(low, high) - device.rssi_offset)
        pieces: list[tuple[int, int, AccessPoint, int]] = [(s, e, ap, rssi) for s, e in on]
        if device.bleed_ap is not None:
            pieces = self._bleed(pieces, device.bleed_ap, length, rng)
        self._emit(device, pieces, length, day, rng, segments, day_start_ms)

    def _bleed(self, pieces: list[tuple[int, int, AccessPoint, int]], neighbour: AccessPoint,
               length: int, rng: Rng) -> list[tuple[int, int, AccessPoint, int]]:
        """Move a few spells of a device's time at home onto a neighbour's AP."""
        for _ in range(rng.poisson(1.0)):
            long_enough = [i for i, (s, e, ap, _) in enumerate(pieces)
                           if e - s > 40 * MINUTE and ap is not neighbour]
            if not long_enough:
                break
            index = rng.choice(long_enough)
            start, end, ap, rssi = pieces[index]
            first = max(start + 5 * MINUTE, 10 * MINUTE)
            last = min(end - 20 * MINUTE, length - 30 * MINUTE)
            if last <= first:
                continue
            spell_start = rng.randint(first, last)
            spell_end = min(spell_start + rng.randint(5 * MINUTE, 3 * HOUR), end - 5 * MINUTE)
            weak = rng.randint(-89, -76)
            pieces[index:index + 1] = [
                (start, spell_start, ap, rssi),
                (spell_start + rng.randint(2, 6) * SECOND, spell_end, neighbour, weak),
                (spell_end + rng.randint(2, 6) * SECOND, end, ap, rssi),
            ]
        return pieces

    def _reboot_plan(self, day: Day) -> dict[int, Interval]:
        """APs that reboot today: down for 1-3 minutes, every station dropped at once."""
        rate = self.config.reboot_rate
        if rate <= 0:
            return {}
        rng = Rng(self.config.seed, "reboot", day.index)
        length = day.length * 1000
        plan: dict[int, Interval] = {}
        for ap in self.world.aps:
            if rng.chance(rate):
                down = rng.randint(30 * MINUTE, length - 2 * HOUR)
                plan[ap.index] = (down, down + rng.randint(MINUTE, 3 * MINUTE))
        return plan

    def _split_reboots(self, device: Device, pieces: list[tuple[int, int, AccessPoint, int]],
                       ) -> list[tuple[int, int, AccessPoint, int]]:
        """Cut pieces at their AP's reboot: silence while down, a re-join (connect) after."""
        if not self._reboots:
            return pieces
        out: list[tuple[int, int, AccessPoint, int]] = []
        for start, end, ap, rssi in pieces:
            reboot = self._reboots.get(ap.index)
            if reboot is None or end <= reboot[0] or start >= reboot[1]:
                out.append((start, end, ap, rssi))
                continue
            down, up = reboot
            if start < down:
                out.append((start, down, ap, rssi))
            rejoin = up + 5 * SECOND + (device.index * 7919) % (55 * SECOND)
            if end > rejoin:
                out.append((rejoin, end, ap, rssi))
        return out

    def _emit(self, device: Device, pieces: list[tuple[int, int, AccessPoint, int]],
              length: int, day: Day, rng: Rng, segments: list[list[Segment]],
              day_start_ms: int) -> None:
        """Split pieces at address rotations and append them as segments of their APs."""
        rotations = [r - day_start_ms for r in device.rotations
                     if day_start_ms < r < day_start_ms + length]
        rebooted = {ap.index: self._reboots[ap.index] for _, _, ap, _ in pieces
                    if ap.index in self._reboots}
        pieces = self._split_reboots(device, pieces)
        for start, end, ap, rssi in pieces:
            flags = (CONNECT if start > 0 else 0) | (DISCONNECT if end < length else 0)
            parts = [(start, end, flags)]
            for rotation in rotations:
                if parts[-1][0] < rotation < parts[-1][1]:
                    head_start, _, head_flags = parts[-1]
                    # The last thing said under the old address is its disconnect, 1 ms before
                    # the address it used stops being valid.
                    parts[-1] = (head_start, rotation - 1, (head_flags & CONNECT) | DISCONNECT)
                    resume = rotation + rng.randint(2, 8) * SECOND
                    if resume < end:
                        parts.append((resume, end, CONNECT | (flags & DISCONNECT)))
            reboot = rebooted.get(ap.index)
            for part_start, part_end, part_flags in parts:
                if part_end - part_start <= 0:
                    continue
                if reboot is not None and reboot[1] <= part_start < reboot[1] + MINUTE:
                    part_flags |= CONNECT  # re-joining after the reboot
                if reboot is not None and part_end == reboot[0]:
                    part_flags &= ~DISCONNECT  # the AP died: it never reports the drop
                rejoined = reboot is not None and reboot[1] <= part_start < reboot[1] + MINUTE
                if part_flags & CONNECT and (device.mode == ROTATING_RECONNECT
                                             or (device.reboot_rotates and rejoined)):
                    self._new_address(device, day_start_ms + part_start)
                mac = device.address_at(day_start_ms + part_start)
                segments[ap.index].append(
                    (part_start, part_end, mac, rssi, part_flags, device.index))

    def _new_address(self, device: Device, at_ms: int) -> None:
        """The device takes a fresh address from ``at_ms`` until its next planned rotation."""
        last = len(device.addresses) - 1
        position = next((i for i, (_, start, end) in enumerate(device.addresses)
                         if start <= at_ms < end or (i == last and at_ms >= end)), None)
        if position is None:
            return
        mac, start, end = device.addresses[position]
        if at_ms <= start:
            return
        fresh = self.probe_addresses.reconnect(device.index, len(device.addresses))
        device.addresses[position:position + 1] = [(mac, start, at_ms), (fresh, at_ms, end)]

    def _transits(self, device: Device, unit: Unit, departures: list[int], arrivals: list[int],
                  day: Day, rng: Rng, segments: list[list[Segment]],
                  probes: list[list[tuple[int, list[tuple[int, str, int, str]]]]]) -> None:
        """Brief lobby associations (and probe bursts at sniffers) when people come and go."""
        lobby = unit.building.lobby
        if lobby is None or (device.kind != "phone" and not device.probes):
            return
        length = day.length * 1000
        day_start_ms = day.start * 1000
        owner = device.owner
        wifi_off = isinstance(owner, Person) and owner.night_wifi_off
        for moment, leaving in [(t, True) for t in departures] + [(t, False) for t in arrivals]:
            if moment < 5 * MINUTE or moment > length - 5 * MINUTE:
                continue
            if wifi_off and not HOUR // 2 <= moment <= int(17.5 * HOUR):
                continue
            if lobby.sniffer and device.probes:
                burst_at = moment + 5 * SECOND if leaving else moment - 200 * SECOND
                self._probe_burst(device, lobby, burst_at, day, rng, probes)
            if device.kind == "phone" and rng.chance(0.5):
                if leaving:
                    start = moment + rng.randint(20, 60) * SECOND
                    end = start + rng.randint(30, 120) * SECOND
                else:
                    end = moment - rng.randint(10, 20) * SECOND
                    start = end - rng.randint(80, 130) * SECOND
                mac = device.address_at(day_start_ms + start)
                if device.address_at(day_start_ms + end) != mac:
                    continue  # an address rotation in the middle: skip this brief visit
                segments[lobby.index].append(
                    (start, end, mac, rng.randint(-75, -55), CONNECT | DISCONNECT, device.index))

    def _probe_burst(self, device: Device, lobby: AccessPoint, at: int, day: Day, rng: Rng,
                     probes: list[list[tuple[int, list[tuple[int, str, int, str]]]]]) -> None:
        """One to three probe requests, heard by a sniffing lobby AP, as one batch."""
        if device.randomizes:
            # Phones scan with a throwaway address, not the one they associate with.
            mac = self.probe_addresses.probe(device.index, day.index)
            device.probe_days |= 1 << day.index
        else:
            mac = device.address_at(day.start * 1000 + at)
        events = []
        moment = at
        ssid = lobby.ssid if rng.chance(0.4) else ""
        for _ in range(rng.randint(1, 3)):
            events.append((moment, mac, rng.randint(-85, -55), ssid))
            moment += rng.randint(100, 800)
        probes[lobby.index].append((at, events))

    # --- visitors --------------------------------------------------------------------------

    def _visits(self, unit: Unit, day: Day, rng: Rng, anyone_home: list[Interval],
                busy: dict[int, list[Interval]], guests_next: dict[int, tuple[Visitor, int]],
                segments: list[list[Segment]],
                probes: list[list[tuple[int, list[tuple[int, str, int, str]]]]],
                home_hours: list[float]) -> int:
        """Evening visitors and overnight guests; returns guests present at 03:00."""
        length = day.length * 1000
        guests_at_night = 0
        staying = self.guests.get(unit.index)
        if staying is not None:
            visitor, leaves = staying
            self._visit(visitor, unit, 0, leaves, day, rng, busy, segments, probes, home_hours)
        if not unit.occupants:
            return 0
        pool = self.pools.get(unit.building.community, [])
        rate = self.config.visit_rate * (2.0 if unit.scenario == GROUP_RENTAL else 1.0)
        if pool and rng.chance(rate):
            arrive = _u(rng, 12.0, 16.0)
            if covers(anyone_home, arrive):
                leave = min(arrive + _u(rng, 0.75, 3.0), int(17.5 * HOUR))
                for _ in range(2 if rng.chance(0.15) else 1):
                    visitor = (rng.choice(unit.regular_visitors)
                               if unit.regular_visitors and rng.chance(0.7) else rng.choice(pool))
                    self._visit(visitor, unit, arrive, leave, day, rng, busy, segments, probes,
                                home_hours)
        if pool and rng.chance(self.config.overnight_guest_rate):
            arrive = _u(rng, 13.0, 16.0)
            visitor = (rng.choice(unit.regular_visitors)
                       if unit.regular_visitors and rng.chance(0.7) else rng.choice(pool))
            if covers(anyone_home, arrive) and visitor.index not in {
                    v.index for v, _ in guests_next.values()}:
                if self._visit(visitor, unit, arrive, length, day, rng, busy, segments, probes,
                               home_hours):
                    guests_next[unit.index] = (visitor, _u(rng, 1.0, 4.0))
                    guests_at_night += 1
        return guests_at_night

    def _visit(self, visitor: Visitor, unit: Unit, arrive: int, leave: int, day: Day, rng: Rng,
               busy: dict[int, list[Interval]], segments: list[list[Segment]],
               probes: list[list[tuple[int, list[tuple[int, str, int, str]]]]],
               home_hours: list[float]) -> bool:
        """A visitor's devices join the unit's AP for the visit; False if they were elsewhere."""
        margin = 5 * MINUTE
        taken = busy.setdefault(visitor.index, [])
        if any(arrive - margin < end and start < leave + margin for start, end in taken):
            return False
        if arrive > 0 and leave <= arrive:
            return False
        taken.append((arrive, leave))
        home_hours[unit.index] += (leave - arrive) / HOUR
        length = day.length * 1000
        for device in visitor.devices:
            if device.kind == "phone":
                on = [(arrive, leave)]
            else:
                start = arrive + rng.randint(5, 30) * MINUTE
                on = [(start, min(leave - MINUTE, start + _u(rng, 0.5, 2.0)))]
            on = [(s, e) for s, e in on if e > s]
            self._place(device, unit, on, day, rng, segments, day.start * 1000)
            if device.follows == CARRIED:
                departures = [leave] if leave < length else []
                arrivals = [arrive] if arrive > 0 else []
                self._transits(device, unit, departures, arrivals, day, rng, segments, probes)
        return True

    # --- access points -------------------------------------------------------------------

    def _outages(self, day: Day, segments: list[list[Segment]]) -> list[Interval | None]:
        """Some APs go down for a while: no reports, their stations re-join when it is back."""
        rng = Rng(self.config.seed, "outage", day.index)
        length = day.length * 1000
        result: list[Interval | None] = []
        for ap in self.world.aps:
            reboot = self._reboots.get(ap.index)
            if reboot is not None:
                # Stations were already cut at the reboot (_emit); the AP is silent meanwhile.
                result.append(reboot)
                ap.outages.append((day.start * 1000 + reboot[0], day.start * 1000 + reboot[1]))
                ap.reboots.append(ap.outages[-1])
                continue
            if not rng.chance(self.config.outage_rate):
                result.append(None)
                continue
            start = rng.randint(30 * MINUTE, length - 5 * HOUR)
            outage = (start, start + rng.randint(10 * MINUTE, 4 * HOUR))
            result.append(outage)
            ap.outages.append((day.start * 1000 + outage[0], day.start * 1000 + outage[1]))
            segments[ap.index] = cut_outage(segments[ap.index], outage)
        return result


def cut_outage(segments: list[Segment], outage: Interval) -> list[Segment]:
    """Segments of an AP with an outage removed: silence while down, re-joins after."""
    down, up = outage
    result: list[Segment] = []
    for start, end, mac, rssi, flags, device in segments:
        if end <= down or start >= up:
            result.append((start, end, mac, rssi, flags, device))
            continue
        if start < down:
            # It was associated when the AP died: the AP never reports the disconnect.
            result.append((start, down, mac, rssi, flags & CONNECT, device))
        rejoin = up + 5 * SECOND + (device * 7919) % (85 * SECOND)
        if end > rejoin:
            result.append((rejoin, end, mac, rssi, CONNECT | (flags & DISCONNECT), device))
    return result
