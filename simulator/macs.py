"""MAC addresses that are unique by construction and look random.

Hardware (globally administered) addresses are a vendor OUI plus a 24-bit NIC part; randomized
(locally administered, "private") addresses carry 46 free bits. Each kind is drawn by passing
a counter through a keyed Feistel permutation, so every address in a run is distinct without a
set of used addresses in memory, yet consecutive addresses share no visible pattern. Probe
addresses of a (device, day) come from a separate counter range, so they can be recomputed
when the truth file is written instead of being kept.
"""

from __future__ import annotations

from simulator.rng import stream_seed

# Real OUIs (IEEE registry) of vendors common in Chinese homes, by device family.
PHONE_OUIS = ("a4:83:e7", "f0:18:98", "3c:22:fb", "00:e0:fc", "48:db:50", "64:09:80",
              "28:6c:07", "8c:77:12", "00:16:6c")
LAPTOP_OUIS = ("00:1b:21", "3c:a9:f4", "00:e0:4c", "f0:18:98", "3c:22:fb")
IOT_OUIS = ("24:0a:c4", "30:ae:a4", "44:19:b6", "28:6c:07", "64:09:80")

_PROBE_BASE = 1 << 45  # randomized association addresses use counters below this
_RECONNECT_BASE = 1 << 44  # addresses made at reconnects: device index * 2**20 + number
_RECONNECT_PER_DEVICE = 1 << 20
MAX_DAYS = 4096  # probe counter layout: device index * MAX_DAYS + day
_MASK24 = (1 << 24) - 1
_MASK40 = (1 << 40) - 1


def _feistel(value: int, half_bits: int, keys: tuple[int, ...]) -> int:
    """A keyed permutation of the integers below 2**(2*half_bits)."""
    mask = (1 << half_bits) - 1
    left, right = value >> half_bits, value & mask
    for key in keys:
        mixed = ((right * 0x9E3779B1 + key) & 0xFFFFFFFF) ^ (right >> 7)
        mixed = (mixed * 0x85EBCA6B) & 0xFFFFFFFF
        left, right = right, left ^ ((mixed ^ (mixed >> 13)) & mask)
    return (left << half_bits) | right


def format_mac(value: int) -> str:
    """A 48-bit integer as a lowercase, colon separated MAC."""
    digits = f"{value:012x}"
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


class AddressAllocator:
    """Hands out distinct hardware and randomized addresses for one seed."""

    def __init__(self, seed: int) -> None:
        self._keys46 = tuple(stream_seed(seed, "mac46", r) & 0xFFFFFFFF for r in range(4))
        self._keys24 = tuple(stream_seed(seed, "mac24", r) & 0xFFFFFFFF for r in range(4))
        self._next_random = 0
        self._next_by_oui: dict[str, int] = {}

    def hardware(self, oui: str) -> str:
        """A globally administered address with the vendor's OUI."""
        counter = self._next_by_oui.get(oui, 0)
        if counter > _MASK24:
            raise OverflowError(f"more than 2**24 addresses requested for OUI {oui}")
        self._next_by_oui[oui] = counter + 1
        nic = _feistel(counter, 12, self._keys24)
        return f"{oui}:{format_mac(nic)[9:]}"

    def randomized(self) -> str:
        """A fresh locally administered unicast address."""
        counter = self._next_random
        self._next_random += 1
        return self._random_from(_feistel(counter, 23, self._keys46))

    def reconnect(self, device_index: int, number: int) -> str:
        """The address a device takes at its ``number``-th reconnect (a pure function)."""
        if number >= _RECONNECT_PER_DEVICE:
            raise OverflowError(f"device {device_index}: more than 2**20 reconnect addresses")
        counter = _RECONNECT_BASE + device_index * _RECONNECT_PER_DEVICE + number
        return self._random_from(_feistel(counter, 23, self._keys46))

    def probe(self, device_index: int, day: int) -> str:
        """The randomized address a device probes with on a given day (a pure function)."""
        counter = _PROBE_BASE + device_index * MAX_DAYS + day
        return self._random_from(_feistel(counter, 23, self._keys46))

    @staticmethod
    def _random_from(bits46: int) -> str:
        """Place 46 bits in a MAC with the locally-administered bit set and multicast clear."""
        first = ((bits46 >> 40) << 2) | 0b10
        return format_mac((first << 40) | (bits46 & _MASK40))
