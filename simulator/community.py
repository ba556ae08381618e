"""Build the static world from a seed: layout, registration, true occupants, devices.

The mix is allocated by exact counts, not by coin flips per unit (20% of 1,000 units rented
is 200 rented units), so that a run hits the requested shares and the accuracy tests get the
number of group rentals they expect; *which* units get each role is random.
"""

from __future__ import annotations

import datetime as dt
import logging

from simulator.config import Period, SimulationConfig
from simulator.identities import IdentityFactory
from simulator.macs import IOT_OUIS, LAPTOP_OUIS, PHONE_OUIS, AddressAllocator
from simulator.model import (
    ALWAYS,
    CARRIED,
    DAY_WORKER,
    DOZING,
    EXTRA_OCCUPANT,
    FEWER,
    FIXED,
    GROUP_RENTAL,
    HOMEBODY,
    INFRASTRUCTURE,
    IRREGULAR,
    NIGHT_SHIFT,
    PER_SSID,
    RESIDENT,
    ROTATING_BIWEEKLY,
    ROTATING_DAILY,
    ROTATING_RECONNECT,
    SCHOOL_CHILD,
    SESSIONS,
    VACANT,
    VISITOR,
    WATCHED,
    YOUNG_CHILD,
    AccessPoint,
    Building,
    Device,
    Person,
    Unit,
    Visitor,
    World,
)
from simulator.rng import Rng, Weighted

LOGGER = logging.getLogger(__name__)

HOUR_MS = 3_600_000

COMMUNITY_WORDS = ("泰丰", "贻成", "翠亨", "海滨", "金街", "万通", "第五大街", "泰达", "丽港",
                   "滨海", "新城", "宏达", "洞庭", "黄海", "雅园", "康桥", "汇文", "欣嘉")
COMMUNITY_SUFFIXES = ("花园", "家园", "公寓", "苑", "新村", "里", "华庭", "小区")

OWNER_SIZES = Weighted([(1, 0.14), (2, 0.30), (3, 0.33), (4, 0.15), (5, 0.08)])
RENTER_SIZES = Weighted([(1, 0.45), (2, 0.35), (3, 0.15), (4, 0.05)])
GROUP_REGISTERED = Weighted([(1, 0.55), (2, 0.35), (3, 0.10)])
FAMILY_ROLES = Weighted([(DAY_WORKER, 0.70), (NIGHT_SHIFT, 0.07), (HOMEBODY, 0.15),
                         (IRREGULAR, 0.08)])
RENTER_ROLES = Weighted([(DAY_WORKER, 0.70), (NIGHT_SHIFT, 0.12), (IRREGULAR, 0.18)])
GROUP_ROLES = Weighted([(DAY_WORKER, 0.45), (NIGHT_SHIFT, 0.40), (IRREGULAR, 0.15)])

# Address behaviour by device kind: iOS 14+/Android 10+ use a private address per network by
# default; Windows keeps the hardware address unless "change daily" is chosen; iOS 18 can
# rotate about every two weeks; IoT uses its hardware address.
MODES = {
    "phone": Weighted([(PER_SSID, 0.65), (ROTATING_BIWEEKLY, 0.12), (ROTATING_DAILY, 0.08),
                       (FIXED, 0.15)]),
    "watch": Weighted([(PER_SSID, 0.70), (FIXED, 0.30)]),
    "tablet": Weighted([(PER_SSID, 0.70), (ROTATING_BIWEEKLY, 0.10), (FIXED, 0.20)]),
    "laptop": Weighted([(FIXED, 0.55), (PER_SSID, 0.35), (ROTATING_DAILY, 0.10)]),
}
OUIS = {"phone": PHONE_OUIS, "watch": PHONE_OUIS, "tablet": PHONE_OUIS, "laptop": LAPTOP_OUIS}
# Always-on devices that are not people: (kind, share of occupied units having one).
IOT_KINDS = (("smart_tv", 0.35), ("set_top_box", 0.12), ("camera", 0.10), ("plug", 0.12),
             ("vacuum", 0.06))


class _Builder:
    """Holds the counters and random streams while the world is built."""

    def __init__(self, config: SimulationConfig, period: Period) -> None:
        self.config = config
        self.period = period
        self.rng = Rng(config.seed, "community")
        reference = period.days[0].date
        self.identities = IdentityFactory(Rng(config.seed, "identities"), reference)
        self.addresses = AddressAllocator(config.seed)
        self.period_start_ms = period.start * 1000
        self.period_end_ms = period.end * 1000
        self.buildings: list[Building] = []
        self.units: list[Unit] = []
        self.aps: list[AccessPoint] = []
        self.people: list[Person] = []
        self.visitors: list[Visitor] = []
        self.devices: list[Device] = []
        self.communities: list[tuple[str, str]] = []
        self.lobbies = 0
        self.sniffers = 0

    # --- layout --------------------------------------------------------------------------

    def layout(self) -> None:
        """Communities of ~community_size units, buildings, floors, units and their APs."""
        remaining = self.config.units
        number = 0
        while remaining > 0:
            number += 1
            size = min(remaining, self.config.community_size)
            if 0 < remaining - size < self.config.community_size // 3:
                size = remaining  # fold a small remainder into the last community
            self._community(number, size)
            remaining -= size

    def _community(self, number: int, size: int) -> None:
        """One community: buildings until it holds ``size`` units."""
        code = f"TEDA-{number:03d}"
        name = self.rng.choice(COMMUNITY_WORDS) + self.rng.choice(COMMUNITY_SUFFIXES)
        self.communities.append((code, name))
        placed = 0
        building_number = 0
        walkups = 0
        while placed < size:
            building_number += 1
            # Steer towards the requested share so that even a small community gets its
            # corridor-AP buildings, while which building is which stays random.
            walkup = self._steered(self.config.walkup_share, walkups, building_number - 1)
            walkups += walkup
            if walkup:
                floors, per_floor = self.rng.randint(5, 6), self.rng.randint(2, 3)
            else:
                floors, per_floor = self.rng.randint(11, 26), self.rng.randint(2, 4)
            count = min(floors * per_floor, size - placed)
            building = Building(code, name, f"B{building_number:02d}", f"{building_number}号楼",
                                "walkup" if walkup else "highrise", floors, per_floor)
            self._building(building, count)
            self.buildings.append(building)
            placed += count

    def _building(self, building: Building, count: int) -> None:
        """Units floor by floor, then the building's APs."""
        tag = f"ap-{building.community.lower().replace('-', '')}-{building.code.lower()}"
        for offset in range(count):
            floor, position = offset // building.per_floor + 1, offset % building.per_floor + 1
            code = f"{floor:02d}{position:02d}"
            low, high = (40.0, 85.0) if building.kind == "walkup" else (55.0, 140.0)
            unit = Unit(
                index=len(self.units), building=building, code=code,
                ref=f"{building.community}/{building.code}/{code}", floor=floor,
                position=position, room=f"{floor}{position:02d}",
                area_m2=round(self.rng.uniform(low, high), 1),
                has_gas=self.rng.chance(0.85), heat_metered=self.rng.chance(0.6),
            )
            building.units.append(unit)
            self.units.append(unit)
        by_place = {(u.floor, u.position): u for u in building.units}
        for unit in building.units:
            for place in ((unit.floor, unit.position - 1), (unit.floor, unit.position + 1),
                          (unit.floor - 1, unit.position), (unit.floor + 1, unit.position)):
                if place in by_place:
                    unit.neighbours.append(by_place[place])
        ssid = self.config.ssid
        if building.kind == "walkup":
            floors = sorted({u.floor for u in building.units})
            for floor in floors:
                ap = self._ap(f"{tag}-f{floor:02d}", building, floor, "", "floor", ssid)
                ap.units = [u for u in building.units if u.floor == floor]
                for unit in ap.units:
                    unit.home_ap = ap
                    # Further from a corridor AP than from an AP inside the flat.
                    unit.home_rssi = (-74, -52)
        else:
            missing = []
            for unit in building.units:
                if self.rng.chance(self.config.no_ap_share):
                    missing.append(unit)
                    continue
                ap = self._ap(f"{tag}-{unit.code}", building, unit.floor, unit.code, "unit", ssid)
                ap.units = [unit]
                unit.home_ap = ap
            for unit in missing:
                # No AP of its own: its devices join a neighbour's AP through the wall.
                served = [n for n in unit.neighbours if n.home_ap is not None and n not in missing]
                if served:
                    unit.home_ap = self.rng.choice(served).home_ap
                    unit.home_rssi = (-86, -74)
            lobby = self._ap(f"{tag}-lobby", building, 1, "", "building", ssid)
            lobby.units = list(building.units)
            lobby.sniffer = self._steered(self.config.sniffer_share, self.sniffers, self.lobbies)
            self.lobbies += 1
            self.sniffers += lobby.sniffer
            building.lobby = lobby

    def _steered(self, share: float, hits: int, tries: int) -> bool:
        """A coin flip nudged towards ``share`` given the hits so far (small runs get some)."""
        return self.rng.chance(share + (share * tries - hits))

    def _ap(self, ap_id: str, building: Building, floor: int | None, unit_code: str,
            coverage: str, ssid: str) -> AccessPoint:
        """Register one AP."""
        ap = AccessPoint(len(self.aps), ap_id, building.community, building.code, floor,
                         unit_code, coverage, ssid,
                         phase=self.rng.randint(0, self.config.snapshot_interval - 1))
        self.aps.append(ap)
        return ap

    # --- registration and occupancy ------------------------------------------------------

    def allocate_scenarios(self) -> None:
        """Rented units, group rentals, vacant, extra-occupant and fewer units by exact counts."""
        order = list(self.units)
        self.rng.shuffle(order)
        n_rented = round(len(order) * self.config.rented_share)
        n_group = round(n_rented * self.config.group_rental_share)
        rented, owned = order[:n_rented], order[n_rented:]
        for unit in rented:
            unit.rented = True
        for unit in rented[:n_group]:
            unit.scenario = GROUP_RENTAL
        others = rented[n_group:] + owned
        self.rng.shuffle(others)
        n_vacant = round(len(self.units) * self.config.vacant_share)
        vacant = [u for u in others if not u.rented][:n_vacant]
        for unit in vacant:
            unit.scenario = VACANT
        occupied = [u for u in others if u.scenario != VACANT]
        n_extra = round(len(occupied) * self.config.extra_occupant_share)
        n_fewer = round(len(occupied) * self.config.fewer_share)
        for unit in occupied[:n_extra]:
            unit.scenario = EXTRA_OCCUPANT
        for unit in occupied[n_extra:n_extra + n_fewer]:
            unit.scenario = FEWER

    def populate(self) -> None:
        """People for every unit, by scenario."""
        for unit in self.units:
            self._household(unit)
            # Drawn only when asked for, so every existing seed gives the same world.
            if (self.config.group_move_in_share > 0 and unit.group_rental
                    and self.rng.chance(self.config.group_move_in_share)):
                unit.moved_in_day = self.rng.randint(self.config.days // 4, self.config.days // 2)
                for person in unit.occupants:
                    person.arrives = unit.moved_in_day
            if self.rng.chance(0.03):
                self._former_resident(unit)

    def _household(self, unit: Unit) -> None:
        """Registered and true occupants of one unit."""
        rng = self.rng
        sizes = RENTER_SIZES if unit.rented else OWNER_SIZES
        if unit.scenario == GROUP_RENTAL:
            registered = GROUP_REGISTERED.draw(rng)
            true_count = rng.randint(max(6, 3 * registered), 15)
            workers = [self._person(unit, rng.randint(18, 48), GROUP_ROLES.draw(rng),
                                    local=False, registered=True) for _ in range(true_count)]
            for worker in workers[:registered]:
                # The lease holder is sometimes a "second landlord" living elsewhere.
                if rng.chance(0.3):
                    worker.lives_here = False
            for worker in workers[registered:]:
                worker.registered = False
            if sum(w.lives_here for w in workers) < true_count:
                missing = true_count - sum(w.lives_here for w in workers)
                workers += [self._person(unit, rng.randint(18, 48), GROUP_ROLES.draw(rng),
                                         local=False, registered=False) for _ in range(missing)]
            self._settle(unit, workers, months=(1, 24))
            # Drawn only when asked for, so every existing seed gives the same world.
            if self.config.shift_group_share > 0 and rng.chance(self.config.shift_group_share):
                self._shift_groups(unit)
            return
        if unit.scenario == VACANT:
            if rng.chance(0.4):
                owners = [self._adult(unit, family=True) for _ in range(rng.randint(1, 3))]
                for owner in owners:
                    owner.lives_here = False
                self._settle(unit, owners, months=(12, 120))
            self._infrastructure(unit, vacant=True)
            return
        size = sizes.draw(rng)
        people = self._family(unit, size) if not unit.rented else self._renters(unit, size)
        if unit.scenario == EXTRA_OCCUPANT:
            extra = (self._person(unit, rng.randint(60, 82), HOMEBODY, local=True, registered=False)
                     if rng.chance(0.25) else self._adult(unit, family=not unit.rented))
            extra.registered = False
            people.append(extra)
        elif unit.scenario == FEWER:
            gone = self._adult(unit, family=not unit.rented)
            gone.lives_here = False
            people.append(gone)
        self._settle(unit, people, months=(1, 36) if unit.rented else (6, 180))
        self._infrastructure(unit, vacant=False)

    def _shift_groups(self, unit: Unit) -> None:
        """Split a group rental's workers into shift groups of 3-6 that share one schedule.

        Co-workers on one shift leave and come home together; each group's first member
        leads, the others copy its role, work days, shift cycle and trips (the day engine
        copies its whole day, a few minutes apart).
        """
        rng = self.rng
        members = [p for p in unit.occupants if p.age >= 18]
        rng.shuffle(members)
        groups = 0
        while len(members) >= 3:
            size = min(len(members), rng.randint(3, 6))
            group, members = members[:size], members[size:]
            group.sort(key=lambda p: p.index)  # the leader's day is drawn first
            leader = group[0]
            if leader.role not in (DAY_WORKER, NIGHT_SHIFT):
                leader.role = DAY_WORKER
            groups += 1
            tag = f"{unit.ref}#S{groups}"
            leader.shift_group = tag
            for follower in group[1:]:
                follower.role = leader.role
                follower.workdays = leader.workdays
                follower.shift_cycle = leader.shift_cycle
                follower.trips = list(leader.trips)
                follower.shift_leader = leader.index
                follower.shift_group = tag

    def _family(self, unit: Unit, size: int) -> list[Person]:
        """An owner-occupier household: adults, children, sometimes grandparents."""
        rng = self.rng
        if size <= 2:
            if rng.chance(0.3):
                return [self._person(unit, rng.randint(62, 85), HOMEBODY, local=True)
                        for _ in range(size)]
            return [self._adult(unit, family=True) for _ in range(size)]
        people = [self._person(unit, rng.randint(28, 50), FAMILY_ROLES.draw(rng), local=True)
                  for _ in range(2)]
        grandparents = rng.randint(1, 2) if size >= 4 and rng.chance(0.6) else 0
        for _ in range(grandparents):
            people.append(self._person(unit, rng.randint(60, 85), HOMEBODY, local=True))
        for _ in range(size - 2 - grandparents):
            people.append(self._child(unit))
        return people

    def _renters(self, unit: Unit, size: int) -> list[Person]:
        """A rented household: young adults, sometimes with a child."""
        people = [self._person(unit, self.rng.randint(20, 40), RENTER_ROLES.draw(self.rng),
                               local=self.rng.chance(0.3)) for _ in range(min(size, 2))]
        for _ in range(size - len(people)):
            people.append(self._child(unit) if self.rng.chance(0.6) else
                          self._person(unit, self.rng.randint(20, 40), RENTER_ROLES.draw(self.rng),
                                       local=False))
        return people

    def _adult(self, unit: Unit, family: bool) -> Person:
        """A working-age adult with a routine fitting the household."""
        roles = FAMILY_ROLES if family else RENTER_ROLES
        return self._person(unit, self.rng.randint(22, 60), roles.draw(self.rng), local=family)

    def _child(self, unit: Unit) -> Person:
        """A child: under six stays home, older ones go to school."""
        age = self.rng.randint(0, 17)
        return self._person(unit, age, YOUNG_CHILD if age < 6 else SCHOOL_CHILD, local=True)

    def _person(self, unit: Unit, age: int, role: str, *, local: bool,
                registered: bool = True) -> Person:
        """A person with identity, routine parameters and devices."""
        rng = self.rng
        identity = self.identities.person(age, local=local, with_phone=age >= 16)
        if (self.config.night_shift_share > 0 and 18 <= age < 60
                and role in (DAY_WORKER, IRREGULAR) and rng.chance(self.config.night_shift_share)):
            role = NIGHT_SHIFT
        person = Person(len(self.people), f"P{len(self.people) + 1:06d}", unit, identity, age, role,
                        registered=registered)
        self.people.append(person)
        if role == DAY_WORKER:
            person.workdays = 6 if rng.chance(0.4 if not local else 0.15) else 5
        if role == NIGHT_SHIFT:
            on, off = rng.choice(((4, 2), (5, 2), (6, 1)))
            person.shift_cycle = (on, off, rng.randint(0, on + off - 1))
        if age >= 18:
            person.overnight_rate = 0.03 if age < 35 else 0.008
            if rng.chance(self.config.trip_rate * self.config.days / 14):
                person.trips.append((rng.randint(-3, self.config.days - 1), rng.randint(2, 7)))
        return person

    def _settle(self, unit: Unit, people: list[Person], months: tuple[int, int]) -> None:
        """Attach people to the unit: who lives there, who is registered, since when."""
        start = self.period.days[0].date
        for person in people:
            if person.lives_here:
                unit.occupants.append(person)
            if person.registered:
                unit.registered.append(person)
                person.move_in = start - dt.timedelta(days=30 * self.rng.randint(*months)
                                                      + self.rng.randint(0, 29))
            if person.lives_here:
                # People living elsewhere take their devices there: none appear here.
                self._personal_devices(person)

    def _former_resident(self, unit: Unit) -> None:
        """A resident who moved out and was deregistered (a row with move_out)."""
        start = self.period.days[0].date
        person = self._person(unit, self.rng.randint(22, 70), DAY_WORKER, local=True)
        person.lives_here = False
        person.move_out = start - dt.timedelta(days=self.rng.randint(20, 700))
        person.move_in = person.move_out - dt.timedelta(days=self.rng.randint(90, 2000))
        unit.former.append(person)

    # --- devices ---------------------------------------------------------------------------

    def _personal_devices(self, person: Person) -> None:
        """1 to 3 devices for people with a phone; none for small children and some elderly."""
        rng = self.rng
        group = person.unit.scenario == GROUP_RENTAL
        kinds: list[str] = []
        if person.role == YOUNG_CHILD:
            return
        if person.age < 12:
            if rng.chance(0.3):
                kinds.append("tablet")
        elif person.age < 18:
            if rng.chance(0.8):
                kinds.append("phone")
            if rng.chance(0.2):
                kinds.append("tablet")
        elif person.age >= 65:
            if rng.chance(0.35):
                return  # no smartphone: a feature phone without Wi-Fi, or none
            kinds.append("phone")
            if rng.chance(0.1):
                kinds.append("tablet")
        else:
            config = self.config
            if config.deviceless_share > 0 and rng.chance(config.deviceless_share):
                return  # cellular data only, or no smartphone: invisible to the Wi-Fi
            kinds.append("phone")
            if config.second_phone_share > 0 and rng.chance(config.second_phone_share):
                kinds.append("phone")
            watch = config.watch_share
            if watch is None:
                watch = 0.03 if group else 0.12
            for kind, share in (("laptop", 0.15 if group else 0.40),
                                ("tablet", 0.05 if group else 0.18),
                                ("watch", watch)):
                if len(kinds) < 3 and rng.chance(share):
                    kinds.append(kind)
        person.night_wifi_off = "phone" in kinds and rng.chance(self.config.night_wifi_off_share)
        home_share = self.config.home_device_share
        travelling = self.config.travelling_tablet_share
        for position, kind in enumerate(kinds):
            if kind in ("phone", "watch"):
                follows = CARRIED
                if (kind == "phone" and position > 0
                        and rng.chance(1.0 - self.config.second_phone_carried)):
                    follows = DOZING  # a second phone left at home
            elif kind == "tablet" and travelling > 0 and rng.chance(travelling):
                follows = CARRIED  # a tablet that goes where its owner goes
            elif kind == "laptop" and rng.chance(0.15):
                follows = ALWAYS  # a desktop or a laptop that never sleeps
            elif home_share > 0 and rng.chance(home_share):
                follows = DOZING
            else:
                follows = SESSIONS
            mode = MODES[kind].draw(rng)
            reconnect = self.config.reconnect_rotation_share
            if (reconnect > 0 and kind in ("phone", "tablet") and mode != FIXED
                    and rng.chance(reconnect)):
                mode = ROTATING_RECONNECT
            device = self._device(RESIDENT, kind, mode, follows, person, person.unit, OUIS[kind])
            device.probes = kind in ("phone", "watch")
            rotates = self.config.reboot_rotation_share
            # Drawn only when asked for, so every existing seed gives the same world.
            if rotates > 0 and mode != FIXED and rng.chance(rotates):
                device.reboot_rotates = True
            person.devices.append(device)

    def _infrastructure(self, unit: Unit, vacant: bool) -> None:
        """Always-on devices that are not people (some also in empty flats)."""
        rng = self.rng
        for kind, share in IOT_KINDS:
            if vacant:
                share = share * 0.4 if kind in ("camera", "plug") else 0.0
            elif unit.scenario == GROUP_RENTAL:
                share = 0.10 if kind == "smart_tv" else 0.0
            if rng.chance(share):
                follows = WATCHED if kind == "smart_tv" and rng.chance(0.3) else ALWAYS
                device = self._device(INFRASTRUCTURE, kind, FIXED, follows, None, unit, IOT_OUIS)
                unit.infrastructure.append(device)

    def _device(self, category: str, kind: str, mode: str, follows: str,
                owner: Person | Visitor | None, unit: Unit | None,
                ouis: tuple[str, ...]) -> Device:
        """A device with its whole address history for the period."""
        device = Device(len(self.devices), f"D{len(self.devices) + 1:07d}", category, kind, mode,
                        follows, owner, unit, rssi_offset=self.rng.randint(0, 10))
        self.devices.append(device)
        start, end = self.period_start_ms, self.period_end_ms
        if mode == FIXED:
            device.addresses = [(self.addresses.hardware(self.rng.choice(ouis)), start, end)]
            return device
        if mode in (PER_SSID, ROTATING_RECONNECT):
            # Reconnect rotation: the day engine adds an address at each connect.
            device.addresses = [(self.addresses.randomized(), start, end)]
            return device
        # Rotations happen at a device-specific time of day, away from the 06:00 day boundary.
        time_of_day = self.rng.randint(1 * HOUR_MS, 23 * HOUR_MS)
        days = len(self.period.days)
        if mode == ROTATING_DAILY:
            rotation_days = list(range(days))
        else:
            rotation_days = []
            day = self.rng.randint(0, 13)
            while day < days:
                rotation_days.append(day)
                day += self.rng.randint(12, 16)
        if self.config.random_rotation_times and mode == ROTATING_BIWEEKLY:
            rotations = [self.period.days[d].start * 1000 + self.rng.randint(HOUR_MS, 23 * HOUR_MS)
                         for d in rotation_days]
        else:
            rotations = [self.period.days[d].start * 1000 + time_of_day
                         + self.rng.randint(-1800_000, 1800_000) for d in rotation_days]
        rotations = [r for r in rotations if start < r < end]
        device.rotations = rotations
        bounds = [start, *rotations, end]
        device.addresses = [(self.addresses.randomized(), bounds[i], bounds[i + 1])
                            for i in range(len(bounds) - 1)]
        return device

    def neighbour_bleed(self) -> None:
        """Some resident devices sometimes join a neighbour's AP through walls and floors."""
        for unit in self.units:
            if unit.home_ap is None or unit.home_rssi[1] < -60:
                continue  # no AP of its own: it already lives on a neighbour's AP
            candidates = [n.home_ap for n in unit.neighbours
                          if n.home_ap is not None and n.home_ap is not unit.home_ap]
            if unit.building.kind == "walkup":
                candidates = [ap for ap in self.aps_by_floor(unit) if ap is not unit.home_ap]
            if not candidates:
                continue
            for person in unit.occupants:
                for device in person.devices:
                    if device.kind != "tablet" and self.rng.chance(self.config.bleed_share):
                        device.bleed_ap = self.rng.choice(candidates)

    def aps_by_floor(self, unit: Unit) -> list[AccessPoint]:
        """Corridor APs of the floors just above and below a walk-up unit."""
        return [n.home_ap for n in unit.neighbours
                if n.home_ap is not None and n.floor != unit.floor]

    def visitors_for(self) -> None:
        """A pool of outside visitors per community, and each household's regular visitors."""
        by_community: dict[str, list[Unit]] = {}
        for unit in self.units:
            by_community.setdefault(unit.building.community, []).append(unit)
        for community, units in by_community.items():
            pool: list[Visitor] = []
            for _ in range(max(10, len(units) // 3)):
                visitor = Visitor(len(self.visitors), f"V{len(self.visitors) + 1:06d}", community)
                self.visitors.append(visitor)
                kinds = ["phone"] + (["tablet" if self.rng.chance(0.5) else "laptop"]
                                     if self.rng.chance(0.15) else [])
                for kind in kinds:
                    device = self._device(VISITOR, kind, MODES[kind].draw(self.rng),
                                          CARRIED, visitor, None, OUIS[kind])
                    device.probes = kind == "phone"
                    visitor.devices.append(device)
                pool.append(visitor)
            for unit in units:
                if unit.occupants:
                    unit.regular_visitors = self.rng.sample(pool, self.rng.randint(0, 3))

    def meter_groups(self) -> None:
        """A few neighbouring flats share meters (recorded against the lowest unit reference)."""
        number = 0
        for building in self.buildings:
            for unit in building.units:
                if unit.meter_group or not self.rng.chance(self.config.shared_meter_share / 2):
                    continue
                mates = [n for n in unit.neighbours if n.floor == unit.floor and not n.meter_group]
                if not mates:
                    continue
                group = [unit, *mates[: self.rng.randint(1, 2)]]
                number += 1
                for member in group:
                    member.meter_group = f"M{number:05d}"


def build_world(config: SimulationConfig, period: Period) -> World:
    """The whole static world for a configuration."""
    builder = _Builder(config, period)
    builder.layout()
    builder.allocate_scenarios()
    builder.populate()
    builder.visitors_for()
    builder.neighbour_bleed()
    builder.meter_groups()
    aps = sorted(builder.aps, key=lambda ap: ap.ap_id)
    for index, ap in enumerate(aps):
        ap.index = index
    LOGGER.info("built %d units, %d APs, %d people, %d devices", len(builder.units), len(aps),
                len(builder.people), len(builder.devices))
    return World(builder.communities, builder.buildings, builder.units, aps, builder.people,
                 builder.visitors, builder.devices)
