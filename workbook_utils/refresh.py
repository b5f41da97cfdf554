"""A view that refreshes itself: facilitator/room.ipynb redraws the room every N seconds while the workshop runs.

    view = refresh.refreshing(draw, every=30)   # draw() once now; then again every 30 s while "auto" is on

`draw` returns what the view shows: a list of texts, figures and tables, put into an ipywidgets `Output`. The
refresh is off until the facilitator ticks "every N s" (a notebook run headless draws once and ends); a timer
thread then calls `draw` again at most `limit` times (bounded: two hours at 30 s) and stops when ticked off, or
when the kernel goes.
"Refresh now" redraws at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class Refresher:
    """Calls `draw` into `output` now, on demand, and every `every` seconds while on (at most `limit` times)."""

    def __init__(self, draw: Callable[[], Any], output: Any, every: float = 30.0, limit: int = 240) -> None:
        self.draw, self.output, self.every, self.limit = draw, output, every, limit
        self.count = 0
        self.error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> None:
        """Draw once, replacing what the output showed; an error is shown, not raised (the timer goes on).

        The outputs are set as data (not printed into the Output), which works from the timer's thread too.
        """
        try:
            shown = list(self.draw())
            self.error = ""
        except Exception as exc:  # a server restarting between two refreshes must not end the view
            self.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            shown = [f"could not refresh: {self.error}"]
        self.output.outputs = tuple(output_of(item) for item in shown)
        self.count += 1

    def start(self) -> None:
        """Refresh every `every` seconds on a daemon thread, until `stop()` or `limit` refreshes."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="room-refresh", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        for _ in range(self.limit):
            if self._stop.wait(self.every):
                return
            self.refresh()

    def stop(self) -> None:
        """Stop the timer (the view keeps its last drawing)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.every + 5)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def refreshing(draw: Callable[[], Any], every: float = 30.0, limit: int = 240, auto: bool = False) -> Any:
    """A box: "Refresh now", a checkbox "every N s" (off unless `auto`), and `draw`'s output, drawn once now.

    The box has `.refresher`, `.now` (the button) and `.auto` (the checkbox), for tests.
    """
    import ipywidgets as widgets

    output = widgets.Output()
    refresher = Refresher(draw, output, every, limit)
    now = widgets.Button(description="Refresh now", icon="refresh")
    auto_box = widgets.Checkbox(value=False, description=f"every {every:g} s", indent=False)
    now.on_click(lambda _: refresher.refresh())
    auto_box.observe(lambda change: refresher.start() if change["new"] else refresher.stop(), names="value")
    box = widgets.VBox([widgets.HBox([now, auto_box]), output])
    box.refresher, box.now, box.auto = refresher, now, auto_box
    refresher.refresh()
    auto_box.value = auto
    return box


def output_of(item: Any) -> dict[str, Any]:
    """One Jupyter output for a text (stdout), a matplotlib figure (PNG, then closed) or anything IPython can show."""
    if isinstance(item, str):
        return {"output_type": "stream", "name": "stdout", "text": item if item.endswith("\n") else item + "\n"}
    data: dict[str, Any] = {"text/plain": repr(item)}
    metadata: dict[str, Any] = {}
    try:
        from IPython import get_ipython
        from IPython.core.formatters import DisplayFormatter
        from matplotlib.figure import Figure

        shell = get_ipython()
        formatter = shell.display_formatter if shell is not None else DisplayFormatter()
        if isinstance(item, Figure):
            import base64
            import io

            import matplotlib.pyplot as plt

            png = io.BytesIO()
            item.savefig(png, format="png", bbox_inches="tight")
            plt.close(item)
            data = {"image/png": base64.b64encode(png.getvalue()).decode(), "text/plain": "<Figure>"}
        else:
            data, metadata = formatter.format(item)
    except ImportError:
        pass
    return {"output_type": "display_data", "data": data, "metadata": metadata}
