"""The shape every notebook shares (design doc §6), as checks a test can run: each returns the problems it finds.

- `heading_problems`: a heading is the first line of its own markdown cell, never the tail of another's text.
- `notice_problems`: "What to notice" has at most three bullets.
- `part_problems`: each Part has its own exercises and key points; a Part after the first begins with the one cell that stands it
  up after a kernel restart (it calls `setup("NN")`); no name a Part uses comes only from an earlier Part.
- `questions.question_problems`: each exercise's question is in its notebook, in its checker's words.

A Part begins with a markdown cell whose first line is its heading, `## Part 2 · Guard rails (§6-§8)` (or a bold
line, `**Part 2 · …**`). A notebook without such headings is one Part.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .notebook_files import CHECK
from .questions import python_of

if TYPE_CHECKING:
    import nbformat

HEADING = re.compile(r"^#{1,6} ")
PART = re.compile(r"^(?:#{2,3} |\*\*)Part (\d+)\b")
FENCE = re.compile(r"^\s*(```|~~~)")
KEY_POINTS = "**Key points**"
BULLET = re.compile(r"^(?:[-*+]|\d+\.) ")  # a top-level list item


def headings(source: str) -> list[tuple[int, str]]:
    """(line number, line) of each Markdown heading in a cell, code blocks aside."""
    found, fenced = [], False
    for number, line in enumerate(source.splitlines()):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and HEADING.match(line):
            found.append((number, line))
    return found


def heading_problems(nb: nbformat.NotebookNode) -> list[str]:
    """Headings that are not the first line of their cell."""
    return [f"cell {i}: the heading {line.strip()!r} is line {number + 1} of its cell, not its first line"
            for i, cell in enumerate(nb.cells) if cell.cell_type == "markdown"
            for number, line in headings(cell.source) if number > 0]


def notice_problems(nb: nbformat.NotebookNode) -> list[str]:
    """"What to notice" lists of more than three bullets."""
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and "What to notice" in cell.source:
            after = cell.source.split("What to notice", 1)[1].splitlines()[1:]
            bullets = [line for line in after if BULLET.match(line)]
            if len(bullets) > 3:
                problems.append(f"cell {i}: What to notice has {len(bullets)} bullets, not at most 3")
    return problems


@dataclass
class Part:
    """A Part of a notebook: its number, its heading cell, and the indexes of its cells."""

    number: int
    start: int
    cells: list[int] = field(default_factory=list)

    def code(self, nb: nbformat.NotebookNode) -> list[int]:
        return [i for i in self.cells if nb.cells[i].cell_type == "code"]


def parts(nb: nbformat.NotebookNode) -> list[Part]:
    """The notebook's Parts in order (one Part, numbered 1, if it has no Part headings)."""
    found: list[Part] = []
    for i, cell in enumerate(nb.cells):
        first = cell.source.lstrip("\n").split("\n", 1)[0] if cell.cell_type == "markdown" else ""
        if match := PART.match(first):
            found.append(Part(int(match.group(1)), i))
        if found:
            found[-1].cells.append(i)
    if not found:
        return [Part(1, 0, list(range(len(nb.cells))))]
    found[0].cells[:0] = list(range(found[0].start))  # the title, the setup cell: Part 1 begins with the notebook
    return found


def restart_cells(nb: nbformat.NotebookNode) -> set[int]:
    """The first code cell of each Part after the first: where a learner who restarted the kernel carries on."""
    return {part.code(nb)[0] for part in parts(nb)[1:] if part.code(nb)}


def part_problems(nb: nbformat.NotebookNode, number: str) -> list[str]:
    """Parts without exercises or key points of their own, without their restart cell, or using what only an earlier
    Part made."""
    problems, earlier = [], set()
    numbers = [part.number for part in parts(nb)]
    if numbers != list(range(1, len(numbers) + 1)):
        problems.append(f"Parts numbered {numbers}, not 1, 2, … (is a Part heading not the first line of its cell?)")
    for k, part in enumerate(parts(nb)):
        code = part.code(nb)
        if not any(CHECK.search(python_of(nb.cells[i].source)) for i in code):
            problems.append(f"Part {part.number}: no exercises of its own (no cell calls qN.check)")
        if not any(nb.cells[i].cell_type == "markdown" and nb.cells[i].source.startswith(KEY_POINTS) for i in part.cells):
            problems.append(f"Part {part.number}: no key points (a markdown cell that starts {KEY_POINTS})")
        if k > 0 and (not code or not _calls_setup(nb.cells[code[0]].source, number)):
            problems.append(f"Part {part.number}: its first code cell does not stand it up after a restart "
                            f'(it should call setup("{number}"))')
        mine: set[str] = set()
        for i in code:
            reads, binds = cell_names(nb.cells[i].source)
            borrowed = sorted((reads - mine) & (earlier - binds))
            if borrowed:
                problems.append(f"Part {part.number}, cell {i}: uses {', '.join(borrowed)} from an earlier Part only")
            mine |= binds
        earlier |= mine
    return problems


def _calls_setup(source: str, number: str) -> bool:
    tree = _parse(source)
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "setup" and n.args
               and isinstance(n.args[0], ast.Constant) and n.args[0].value == number for n in ast.walk(tree))


def cell_names(source: str) -> tuple[set[str], set[str]]:
    """(names a code cell reads before binding them, names it binds at top level), magics aside; `%sql … :name`
    reads `name`."""
    import symtable

    from .exercises.cells import free_names

    code = ast.unparse(_Synchronous().visit(_parse(source)))  # top-level await is fine in a cell, not in symtable
    table = symtable.symtable(code, "<cell>", "exec")
    binds = {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()}
    magics = source if source.lstrip().startswith("%%") else "\n".join(
        line for line in source.splitlines() if line.lstrip().startswith("%"))
    sql_reads = set(re.findall(r"(?<![:\w]):([A-Za-z_]\w*)", magics))  # :name binds a variable; ::text casts
    return set(free_names(code)) | sql_reads, binds


def _parse(source: str) -> ast.Module:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)  # an invalid escape in a learner's string is not our business
        try:
            return ast.parse(python_of(source))
        except SyntaxError:
            return ast.Module(body=[], type_ignores=[])


class _Synchronous(ast.NodeTransformer):
    """The same names without await: `await x` → `x`, `async with`/`async for` → `with`/`for`."""

    def visit_Await(self, node: ast.Await) -> ast.AST:
        return self.visit(node.value)

    def visit_AsyncWith(self, node: ast.AsyncWith) -> ast.AST:
        return self.generic_visit(ast.copy_location(ast.With(items=node.items, body=node.body, type_comment=None), node))

    def visit_AsyncFor(self, node: ast.AsyncFor) -> ast.AST:
        loop = ast.For(target=node.target, iter=node.iter, body=node.body, orelse=node.orelse, type_comment=None)
        return self.generic_visit(ast.copy_location(loop, node))

    def visit_comprehension(self, node: ast.comprehension) -> ast.AST:
        node.is_async = 0
        return self.generic_visit(node)
