"""Conditions drawn afresh for each check: sizes, ids and pool sizes the learner cannot predict.

A `Draw` hands out named random values from one seed. A value is drawn the first time its name is asked for
and the same value comes back on every later ask, so the checker's reference and the learner's answer meet
the same conditions. When a check fails, `describe()` names the values and the seed, and
`q1.check(answer, seed=…)` replays them:

    draw = Draw()
    n = draw.integer("users", 15, 60)                  # drawn now
    ids = draw.sample("ids", range(1, 100_000), n)     # drawn now
    assert draw.integer("users", 15, 60) == n          # asked again: the same value
    draw.describe()   # 'users = 37, ids = [8812, 51, …] (seed 402913)'
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
SEEDS = 1_000_000  # a seed short enough to type back into q1.check(answer, seed=…)


class Draw:
    """Named random values from one seed; each name is drawn once, then remembered."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = random.randrange(SEEDS) if seed is None else seed
        self._rng = random.Random(self.seed)
        self.values: dict[str, Any] = {}
        self.memo: dict[str, Any] = {}  # what a checker worked out under these conditions (e.g. the reference's result)
        self._shown: dict[str, str] = {}

    def pick(self, name: str, make: Callable[[random.Random], T], show: Callable[[T], str] = repr) -> T:
        """The value called `name`: made by `make(rng)` the first time, the same value afterwards."""
        if name not in self.values:
            self.values[name] = make(self._rng)
            self._shown[name] = show(self.values[name])
        return self.values[name]

    def integer(self, name: str, low: int, high: int) -> int:
        """A whole number from low to high, both included."""
        return self.pick(name, lambda rng: rng.randint(low, high))

    def number(self, name: str, low: float, high: float) -> float:
        """A float from low to high, rounded to 3 decimals (so that the printed value is the value)."""
        return self.pick(name, lambda rng: round(rng.uniform(low, high), 3))

    def choice(self, name: str, options: Sequence[T]) -> T:
        """One of `options`."""
        return self.pick(name, lambda rng: rng.choice(list(options)))

    def sample(self, name: str, population: Sequence[T], k: int) -> list[T]:
        """k distinct items of `population`, in random order."""
        return self.pick(name, lambda rng: rng.sample(population, k), _short)

    def describe(self) -> str:
        """The values drawn so far and the seed that replays them, in one line."""
        values = ", ".join(f"{name} = {shown}" for name, shown in self._shown.items())
        return f"{values} (seed {self.seed})" if values else f"seed {self.seed}"


def _short(values: Sequence[Any], shown: int = 6) -> str:
    """A list shown by its first items and its length."""
    values = list(values)
    head = ", ".join(map(repr, values[:shown]))
    return f"[{head}]" if len(values) <= shown else f"[{head}, … {len(values)} in all]"
