"""How the notebooks' prose reads against the house style (design doc §6, "Words"): a report, not a test.

    .venv/bin/python benchmarks/prose.py [00 01 …] [--longest 5]

Per notebook: its markdown cells, the words per cell (median, largest, cells over 150 words), paragraphs over four
sentences, sentences over 30 words, and the longest sentences themselves with their cell number.

What counts as prose: markdown text outside code blocks, tables, HTML comments (the nav markers) and headings;
a list item is a sentence (or several) of its own; inline code and link targets count as one word each, link text as
its words. Sentences end at ., ! or ? followed by a space and a capital, a digit, a quote or an opening bracket.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CELL_WORDS, SENTENCE_WORDS, PARAGRAPH_SENTENCES = 150, 30, 4  # the house style's limits
FENCE = re.compile(r"^\s*(```|~~~)")
COMMENT = re.compile(r"<!--.*?-->", re.S)
LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
CODE = re.compile(r"`[^`]*`")
SENTENCE_END = re.compile(r"(?<=[.!?])[)\"”’*_]*\s+(?=[A-Z0-9\"“'‘(`*_§])")
ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")


def prose_of(source: str) -> list[str]:
    """A markdown cell's paragraphs of prose (list items each on their own), markup reduced to words."""
    text = COMMENT.sub("", source)
    paragraphs: list[str] = []
    current: list[str] = []
    fenced = False
    for line in text.splitlines() + [""]:
        if FENCE.match(line):
            fenced = not fenced
            continue
        skip = fenced or line.lstrip().startswith(("|", "#", ">")) or re.fullmatch(r"\s*(-{3,}|\*{3,})\s*", line)
        if skip or not line.strip() or ITEM.match(line):
            if current:
                paragraphs.append(" ".join(current))
            current = [] if skip or not line.strip() else [ITEM.sub("", line).strip()]
            continue
        current.append(line.strip())
    return [_plain(p) for p in paragraphs if p.strip()]


def _plain(paragraph: str) -> str:
    """Links as their text, emphasis marks dropped (inline code kept: `words` counts it as one word)."""
    paragraph = LINK.sub(r"\1", paragraph)
    return re.sub(r"\s+", " ", paragraph.replace("**", "")).strip()


def sentences(paragraph: str) -> list[str]:
    return [s.strip() for s in SENTENCE_END.split(paragraph) if s.strip()]


def words(text: str) -> int:
    """Words of prose; a span of inline code is one word."""
    return len(re.findall(r"[\w’'-]+", CODE.sub(" code ", text)))


@dataclass
class Report:
    """What one notebook's prose measures."""

    name: str
    cell_words: list[tuple[int, int]] = field(default_factory=list)  # (cell, words of prose)
    long_paragraphs: int = 0
    long_sentences: list[tuple[int, int, str]] = field(default_factory=list)  # (words, cell, sentence)
    sentence_count: int = 0


def measure(path: Path) -> Report:
    """The prose figures of one notebook."""
    import nbformat

    report = Report(path.name)
    for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
        if cell.cell_type != "markdown":
            continue
        paragraphs = prose_of(cell.source)
        report.cell_words.append((i, sum(words(p) for p in paragraphs)))
        for paragraph in paragraphs:
            said = sentences(paragraph)
            report.sentence_count += len(said)
            report.long_paragraphs += len(said) > PARAGRAPH_SENTENCES
            report.long_sentences += [(words(s), i, s) for s in said]
    report.long_sentences.sort(key=lambda t: -t[0])
    return report


def show(report: Report, longest: int) -> str:
    """The report of one notebook as lines of text."""
    counted = [n for _, n in report.cell_words if n]
    over = sum(n > CELL_WORDS for n in counted)
    long = sum(n > SENTENCE_WORDS for n, _, _ in report.long_sentences)
    lines = [f"{report.name}: {len(report.cell_words)} markdown cells, {sum(counted)} words; words per cell: median "
             f"{statistics.median(counted) if counted else 0:.0f}, largest {max(counted, default=0)}, "
             f"{over} cells over {CELL_WORDS}; {report.sentence_count} sentences, {long} over {SENTENCE_WORDS} words; "
             f"{report.long_paragraphs} paragraphs over {PARAGRAPH_SENTENCES} sentences",
             "  largest cells (words): " + ", ".join(f"cell {i}: {n}" for i, n in sorted(
                 report.cell_words, key=lambda t: -t[1])[:longest]),
             "  longest sentences:"]
    for n, cell, sentence in report.long_sentences[:longest]:
        shown = sentence if len(sentence) <= 150 else sentence[:147] + "…"
        lines.append(f"    {n:3d} words (markdown cell {cell}): {shown}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from workbook_utils.notebook_files import notebook_paths

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("numbers", nargs="*", help="notebook numbers (default: all)")
    parser.add_argument("--longest", type=int, default=5, help="how many of the longest sentences to show")
    args = parser.parse_args(argv)
    for path in notebook_paths():
        if not args.numbers or path.name[:2] in args.numbers:
            print(show(measure(path), args.longest))


if __name__ == "__main__":
    main()
