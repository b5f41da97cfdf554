"""Each chart kind draws what it is given: one bar per case, one line per column, one segment per phase."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd

from workbook_utils import charts


def teardown_function():
    plt.close("all")


def test_bars_colours_failing_cases():
    ax = charts.bars(pd.Series({"slow": 2.0, "fast": 0.1}), "t", failing=("slow",), log=True)
    colors = [matplotlib.colors.to_hex(p.get_facecolor()) for p in ax.patches]
    assert colors == [charts.FAILING, charts.FIXED] and ax.get_xscale() == "log"


def test_lines_draw_each_column_and_the_limits():
    data = pd.DataFrame({"lazy": [2, 11, 101], "eager": [2, 2, 2]}, index=[1, 10, 100])
    ax = charts.lines(data, "t", "N", "statements", failing=("lazy",), logx=True, limits={"budget": 5})
    assert [line.get_label() for line in ax.get_lines()[:2]] == ["lazy", "eager"]
    assert matplotlib.colors.to_hex(ax.get_lines()[0].get_color()) == charts.FAILING
    assert ax.get_lines()[2].get_ydata()[0] == 5 and ax.get_xscale() == "log"
    (label,) = ax.texts
    assert label.get_text().strip() == "budget" and label.xy[0] > 0  # placed where a log axis can draw it


def test_lanes_draw_one_segment_per_phase_and_label_failures():
    phases = pd.DataFrame({"worker": [0, 0, 1], "phase": ["wait", "hold", "wait"],
                           "start": [0.0, 0.1, 0.0], "end": [0.1, 0.5, 0.3]})
    outcomes = pd.DataFrame({"outcome": ["ok", "TimeoutError"], "seconds": [0.5, 0.3]})
    ax = charts.lanes(phases, "t", {"wait": "#f39c12", "hold": "#2980b9"}, outcomes)
    widths = sorted(round(p.get_width(), 3) for p in ax.patches)
    assert widths == [0.1, 0.3, 0.4]
    assert [t.get_text().strip() for t in ax.texts] == ["TimeoutError"]


def test_log_axes_are_labelled_as_plain_numbers():
    data = pd.DataFrame({"lazy": [0.4, 6.0, 40.0]}, index=[1, 10, 100])
    ax = charts.lines(data, "t", "N", "ms", logx=True, logy=True)
    ax.figure.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert "0.5" in labels and "1" in labels and "20" in labels, labels
    assert not any("10^" in label or "times" in label for label in labels)
    assert {"1", "2", "5", "10", "100"} <= {t.get_text() for t in ax.get_xticklabels()}


def test_bar_labels_read_as_numbers_with_their_unit():
    assert charts.value_label(3840.0, "rows") == "3,840 rows"
    assert charts.value_label(1, "statements") == "1 statement"
    assert charts.value_label(0.25, "s") == "0.25 s" and charts.value_label(1, "s") == "1 s"
    assert charts.value_label(1, "ms") == "1 ms"


def test_a_log_axis_over_many_decades_labels_only_the_powers_of_ten():
    data = pd.DataFrame({"lazy": [0.001, 10.0]}, index=[1, 10])
    ax = charts.lines(data, "t", "N", "s", logy=True)
    ax.figure.canvas.draw()
    labels = {t.get_text() for t in ax.get_yticklabels() if t.get_text()}
    assert "1" in labels and "0.01" in labels and not {"2", "5", "0.5"} & labels, labels
