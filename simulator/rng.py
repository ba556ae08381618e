"""A seeded random source whose sequences do not change between Python versions.

Python guarantees only that ``random.Random.random()`` keeps producing the same sequence for a
seed; ``randrange``, ``choice``, ``shuffle``, ``sample`` and ``gauss`` have changed between
releases. Byte-identical output for a seed therefore builds every draw here from ``random()``
alone. Streams are keyed by a tuple (seed, purpose, ...) hashed with SHA-256, so independent
parts of the simulation (the community, each day's behaviour, utility noise) do not shift each
other when one of them draws a little more or less.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections.abc import MutableSequence, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


def stream_seed(*key: object) -> int:
    """A 128-bit integer seed derived from a key tuple."""
    text = "\x1f".join(str(part) for part in key)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:16], "big")


class Rng:
    """Random draws built only on random(), keyed by (seed, purpose, ...)."""

    __slots__ = ("random",)

    def __init__(self, *key: object) -> None:
        # Integer seeding (init_by_array over 32-bit chunks) is stable across CPython versions.
        self.random = random.Random(stream_seed(*key)).random

    def uniform(self, low: float, high: float) -> float:
        """A float in [low, high)."""
        return low + (high - low) * self.random()

    def randint(self, low: int, high: int) -> int:
        """An integer in [low, high], both ends included."""
        return low + int(self.random() * (high - low + 1))

    def chance(self, probability: float) -> bool:
        """True with the given probability."""
        return self.random() < probability

    def choice(self, items: Sequence[T]) -> T:
        """One element, uniformly."""
        return items[int(self.random() * len(items))]

    def shuffle(self, items: MutableSequence[T]) -> None:
        """Shuffle in place (Fisher-Yates)."""
        for i in range(len(items) - 1, 0, -1):
            j = int(self.random() * (i + 1))
            items[i], items[j] = items[j], items[i]

    def sample(self, items: Sequence[T], k: int) -> list[T]:
        """k distinct elements in random order."""
        pool = list(items)
        self.shuffle(pool)
        return pool[:k]

    def gauss(self, mean: float = 0.0, sigma: float = 1.0) -> float:
        """A normal draw (Box-Muller)."""
        u1 = 1.0 - self.random()  # in (0, 1]: log is finite
        u2 = self.random()
        return mean + sigma * math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)

    def noise(self, sigma: float) -> float:
        """A multiplicative log-normal factor with median 1."""
        return math.exp(self.gauss(0.0, sigma))

    def poisson(self, mean: float) -> int:
        """A Poisson draw (Knuth's method; means here are small)."""
        limit = math.exp(-mean)
        count = 0
        product = self.random()
        while product > limit:
            count += 1
            product *= self.random()
        return count


class Weighted(Generic[T]):
    """A fixed weighted choice, precomputed for repeated draws."""

    __slots__ = ("_items", "_cumulative", "_total")

    def __init__(self, pairs: Sequence[tuple[T, float]]) -> None:
        if not pairs or any(weight < 0 for _item, weight in pairs):
            raise ValueError("weights must be a non-empty list of non-negative numbers")
        self._items = [item for item, _weight in pairs]
        self._cumulative: list[float] = []
        total = 0.0
        for _item, weight in pairs:
            total += weight
            self._cumulative.append(total)
        if total <= 0:
            raise ValueError("weights must not all be zero")
        self._total = total

    def draw(self, rng: Rng) -> T:
        """One item with probability proportional to its weight."""
        index = bisect.bisect_right(self._cumulative, rng.random() * self._total)
        return self._items[min(index, len(self._items) - 1)]
