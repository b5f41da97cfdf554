"""The workbook's chart kinds, one visual style: failing-vs-fixed bars (more kinds join as notebooks need them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

FAILING, FIXED, NEUTRAL = "#c0392b", "#27ae60", "#7f8c8d"


def bars(values: pd.Series, title: str, unit: str = "s", failing: tuple[str, ...] = (), log: bool = False) -> Axes:
    """Horizontal bars, one per case, failing cases red and the rest green, each labelled with its value."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(values)))
    colors = [FAILING if label in failing else FIXED for label in values.index]
    ax.barh(list(map(str, values.index)), values.to_numpy(), color=colors)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    for y, v in enumerate(values.to_numpy()):
        ax.annotate(f" {v:,.3g} {unit}", (v, y), va="center", fontsize=9)
    ax.set_title(title, loc="left", fontsize=11)
    ax.set_xlabel(unit)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return ax
