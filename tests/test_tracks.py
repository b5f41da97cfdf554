"""Tracks by the day (issue 26 §1): every section has its minutes and tracks, the minutes add up to each Part's own
time, each track fits its day and keeps the exercises of every Part it touches, and the guide shows the current plan."""

from __future__ import annotations

import re

import nbformat
import pytest

from workbook_utils import tracks
from workbook_utils.config import project_root
from workbook_utils.notebook_files import intro, notebook_paths

GUIDE = (project_root() / "FACILITATOR.md").read_text()


@pytest.fixture(scope="module")
def found() -> dict[str, list[tracks.Section]]:
    return tracks.all_sections()


def test_every_section_has_metadata_and_every_track_fits_its_day(found):
    assert tracks.problems(found) == []
    assert len(tracks.day_minutes("1-day", found)) == 1 and 270 <= tracks.day_minutes("1-day", found)[0] <= 300


def _part_minutes(path) -> dict[int, int]:
    """Each Part's minutes as the notebook's own Time line states them ("Part 1 (…) … 55 minutes"); {1: total} when
    it has no Parts."""
    text = intro(path).time
    first = "\n\n".join(c.source for c in nbformat.read(path, as_version=4).cells[:4])
    whole = re.search(r"\*\*Time:\*\*(.*?)(?:\n\n)", first + "\n\n", re.S)
    said = whole.group(1) if whole else text
    parts = re.split(r"Part (\d+)", said)[1:]
    stated = {int(n): int(m.group(1)) for n, rest in zip(parts[::2], parts[1::2], strict=True)
              if (m := re.search(r"(?:≈|about)?\s*(\d+)\s*min", rest))}
    return stated or {1: intro(path).minutes}


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.name[:2])
def test_the_minutes_of_a_parts_sections_add_up_to_its_stated_time(path, found):
    sections = found[path.name[:2]]
    summed: dict[int, int] = {}
    for s in sections:
        summed[s.part] = summed.get(s.part, 0) + (s.minutes or 0)
    assert summed == _part_minutes(path)
    assert sum(summed.values()) == intro(path).minutes


def test_a_track_that_keeps_part_of_a_part_without_its_exercises_is_a_problem(found):
    broken = {nb: [tracks.Section(**{**vars(s), "tracks": [t for t in s.tracks if not (nb == "01" and s.exercises)]})
                   for s in secs] for nb, secs in found.items()}
    said = tracks.problems(broken)
    assert "1-day: keeps Part 1 of 01 but not its exercises" in said


def test_a_section_without_minutes_is_named(found):
    broken = {**found, "00": [tracks.Section(**{**vars(s), "minutes": None}) if s.key == "§2" else s
                              for s in found["00"]]}
    assert "00: '2. The dataset' has no minutes" in tracks.problems(broken)


def test_the_guide_shows_the_plan_the_notebooks_hold(found):
    block = re.search(r"<!-- tracks -->\n(.*?)\n<!-- /tracks -->", GUIDE, re.S)
    assert block and block.group(1) == tracks.plan(found), "run python -m workbook_utils.regenerate"


def _apply_tracks():
    """benchmarks/apply_tracks.py as a module (benchmarks is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("apply_tracks", project_root() / "benchmarks" / "apply_tracks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_notebooks_hold_what_the_table_says(capsys):
    assert _apply_tracks().main(check=True) == 0, capsys.readouterr().out


def test_a_section_the_table_does_not_know_stops_the_script_naming_it(monkeypatch):
    module = _apply_tracks()
    monkeypatch.setitem(module.TABLE, "03", {k: v for k, v in module.TABLE["03"].items() if k != "§9"})
    with pytest.raises(SystemExit, match=r"03_explain_analyze.ipynb: the section '9\. Joins: nested loop, hash, merge'"):
        module.main(check=True)
