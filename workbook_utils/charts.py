"""The workbook's chart kinds, one visual style: failing-vs-fixed bars, curves and timelines, swim lanes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

FAILING, FIXED, NEUTRAL = "#c0392b", "#27ae60", "#7f8c8d"


def plain_numbers(ax: Axes) -> Axes:
    """Label the ticks of an axis's log scales as a reader writes numbers (0.4, 1, 40), not as 4×10⁻¹."""
    import math

    from matplotlib.ticker import FuncFormatter, LogLocator

    for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if axis.get_scale() == "log":
            low, high = sorted(limits)
            decades = math.log10(high / low) if low > 0 else 99
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 3 else (1.0,)))
            axis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:,.6g}"))
            axis.set_minor_formatter(FuncFormatter(lambda _v, _p: ""))
    return ax


def value_label(value: float, unit: str) -> str:
    """"3,840 rows", "1 statement", "0.25 s": whole numbers in full, a singular unit for exactly one."""
    unit = unit[:-1] if value == 1 and unit.endswith("s") and len(unit) > 2 else unit
    number = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3g}"
    return f"{number} {unit}"


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
        ax.annotate(f" {value_label(v, unit)}", (v, y), va="center", fontsize=9)
    ax.set_title(title, loc="left", fontsize=11)
    ax.set_xlabel(unit)
    ax.spines[["top", "right"]].set_visible(False)
    plain_numbers(ax)
    fig.tight_layout()
    return ax


def lines(data: pd.DataFrame, title: str, xlabel: str, ylabel: str, failing: tuple[str, ...] = (),
          logx: bool = False, logy: bool = False, steps: bool = False, limits: dict[str, float] | None = None) -> Axes:
    """One line per column against the index (cost-vs-size curves, timelines); `limits` draws labelled levels."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    palette = iter([FIXED, "#2980b9", "#8e44ad", "#d35400", NEUTRAL])
    for column in data.columns:
        color = FAILING if column in failing else next(palette)
        ax.plot(data.index, data[column], label=str(column), color=color, marker=None if steps else "o",
                markersize=3, drawstyle="steps-post" if steps else "default")
    ax.set(xscale="log" if logx else "linear", yscale="log" if logy else "linear", xlabel=xlabel, ylabel=ylabel)
    for label, level in (limits or {}).items():  # after the scales: a label's x must be valid on a log axis
        ax.axhline(level, color=NEUTRAL, linestyle="--", linewidth=1)
        ax.annotate(f" {label}", (ax.get_xlim()[0], level), va="bottom", fontsize=8, color=NEUTRAL)
    ax.set_title(title, loc="left", fontsize=11)
    ax.legend(frameon=False, fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    plain_numbers(ax)
    fig.tight_layout()
    return ax


def lanes(phases: pd.DataFrame, title: str, colors: dict[str, str], outcomes: pd.DataFrame | None = None,
          label: str = "worker") -> Axes:
    """Swim lanes: one row per worker, one segment per phase (worker, phase, start, end); failed outcomes labelled."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    workers = sorted(phases["worker"].unique())
    fig, ax = plt.subplots(figsize=(8, max(1.8, 0.8 + 0.25 * len(workers))))
    for row in phases.itertuples():
        ax.barh(row.worker, row.end - row.start, left=row.start, height=0.7, color=colors.get(row.phase, NEUTRAL))
    for worker, row in (outcomes if outcomes is not None else phases.iloc[:0]).iterrows():
        if row.outcome != "ok":
            ax.annotate(f" {row.outcome}", (row.seconds, worker), va="center", fontsize=8, color=FAILING)
    ax.set_xlim(0, phases["end"].max() * 1.2)  # room for the failure labels
    ax.set_yticks(workers, [f"{label} {w}" for w in workers], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since all started")
    ax.set_title(title, loc="left", fontsize=11)
    ax.legend(handles=[Patch(color=c, label=p) for p, c in colors.items()], frameon=False, fontsize=8,
              loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return ax
