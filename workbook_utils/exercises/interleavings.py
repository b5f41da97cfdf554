"""Every order in which concurrent transactions can meet, cycles of three included (for `races.run` scripts).

A deadlock needs each transaction to hold some locks and wait for another's: each session runs a prefix of its
steps, then all go on. Two transfers in opposite directions deadlock; so do three transfers a→b, b→c, c→a, whose
every pair is harmless. A checker that only tries two transactions misses the second kind, so `cycle` builds the
ring of n transactions and `schedules` gives every prefix of every session, each followed by the rest of each
session in every order:

    moves = cycle([1, 2, 3], 3)                              # [(1, 2), (2, 3), (3, 1)]
    scripts = {f"s{i}": transfer_statements(a, b, 10) for i, (a, b) in enumerate(moves, 1)}
    for steps in schedules(scripts, draw, limit=12):         # all of them, or a drawn dozen (the full ring first)
        race = races.run(engine, [(s, sql, "BLOCKS|ok") for s, sql in steps] + commits)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

from .draws import Draw


def cycle(ids: Sequence[Any], transactions: int) -> list[tuple[Any, Any]]:
    """(from, to) of `transactions` moves around a ring of the first `transactions` ids: each takes the next one's."""
    if not 2 <= transactions <= len(ids):
        raise ValueError(f"a cycle needs 2 to {len(ids)} transactions, not {transactions}")
    ring = list(ids[:transactions])
    return [(ring[i], ring[(i + 1) % transactions]) for i in range(transactions)]


def interleave(scripts: dict[str, Sequence[Any]], held: dict[str, int], order: Sequence[str]) -> list[tuple[str, Any]]:
    """(session, step) pairs: the first held[s] steps of each session in `order`, then the rest of each, in `order`."""
    first = [(s, step) for s in order for step in scripts[s][:held[s]]]
    return first + [(s, step) for s in order for step in scripts[s][held[s]:]]


def every_schedule(scripts: dict[str, Sequence[Any]]) -> Iterator[list[tuple[str, Any]]]:
    """Every prefix of every session (at least one step each), the sessions taken in every order; no repeats."""
    sessions, seen = list(scripts), set()
    for prefix in itertools.product(*(range(1, len(scripts[s]) + 1) for s in sessions)):
        for order in itertools.permutations(sessions):
            steps = interleave(scripts, dict(zip(sessions, prefix, strict=True)), order)
            key = tuple(s for s, _ in steps)  # each session keeps its own order: who goes when says it all
            if key not in seen:
                seen.add(key)
                yield steps


def schedules(scripts: dict[str, Sequence[Any]], draw: Draw | None = None,
              limit: int | None = None) -> list[list[tuple[str, Any]]]:
    """Every schedule, or (with `draw` and `limit`) the ring where each session holds its first step, plus schedules
    drawn from the rest: the drawn ones are named in the draw, so a failed check can be replayed."""
    every = list(every_schedule(scripts))
    if draw is None or limit is None or len(every) <= limit:
        return every
    picked = draw.pick("schedules", lambda rng: sorted(rng.sample(range(1, len(every)), limit - 1)),
                       lambda chosen: f"{len(chosen) + 1} of {len(every)}")
    return [every[0]] + [every[i] for i in picked]
