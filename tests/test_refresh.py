"""The room's self-refreshing view: drawn once at start, again on demand and on a bounded timer, errors shown."""

from __future__ import annotations

import time

from workbook_utils import refresh


def _texts(box) -> list[str]:
    return [o.get("text", "") for o in box.children[1].outputs]


def test_it_draws_once_then_on_demand_and_the_timer_is_off_by_default():
    calls = []
    box = refresh.refreshing(lambda: calls.append(1) or [f"draw {len(calls)}"], every=0.05)
    assert _texts(box) == ["draw 1\n"] and not box.refresher.running
    time.sleep(0.2)
    assert len(calls) == 1  # headless: nothing runs on its own
    box.now.click()
    assert _texts(box) == ["draw 2\n"]


def test_the_timer_refreshes_until_its_limit_or_until_unticked():
    box = refresh.refreshing(lambda: [time.monotonic()], every=0.02, limit=3)
    box.auto.value = True
    assert box.refresher.running
    deadline = time.monotonic() + 10
    while box.refresher.running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert box.refresher.count == 1 + 3 and not box.refresher.running  # the first drawing, then `limit` more
    box = refresh.refreshing(lambda: ["x"], every=30, auto=True)
    box.auto.value = False  # stops at once, not after its 30 s wait
    assert not box.refresher.running


def test_a_failing_draw_is_shown_and_does_not_stop_the_view():
    def draw():
        raise ConnectionError("server closed the connection\nmore")

    box = refresh.refreshing(draw)
    assert _texts(box) == ["could not refresh: ConnectionError: server closed the connection\n"]


def test_figures_become_images_and_are_closed():
    import matplotlib.pyplot as plt
    import pandas as pd

    fig, _ = plt.subplots()
    box = refresh.refreshing(lambda: ["text", fig, pd.DataFrame({"a": [1]})])
    kinds = [sorted(o.get("data", {"stdout": 1})) for o in box.children[1].outputs]
    assert kinds == [["stdout"], ["image/png", "text/plain"], ["text/html", "text/plain"]]
    assert fig.number not in plt.get_fignums()
