"""Each exercise's question, in its notebook, right above its answer cell, in its checker's words (one source).

An exercises module (`workbook_utils/exercises/nbNN.py`) lists its `QUESTIONS`; this tool writes each one into
notebook NN as a markdown cell (the question, then the shape of the answer) that ends with a marker comment, the way
`notebook_files.update_navigation` writes the nav line, and `question_problems` says where a notebook differs:

    python -m workbook_utils.questions           # write the question cells of every notebook
    python -m workbook_utils.questions --check   # list the differences; exit 1 if there are any
    python -m workbook_utils.questions notebooks/01_connection_pooling.ipynb   # only these notebooks

Where the cells go: the *check cell* of q1 is the code cell whose top-level statement calls `q1.check(…)`. Its
*answer cell* is the code cell right above it when that cell defines a name the check passes (`def handle…` above
`q1.check(handle)`, `answer = ____` above `q1.check(answer)`); otherwise the check cell is the answer cell too.
The question cell sits right above the answer cell.
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .notebook_files import notebook_paths

if TYPE_CHECKING:
    import nbformat

    from .exercises import Question

MARK = ("<!-- question {name}: written from its checker (workbook_utils/exercises/nb{number}.py) by "
        "python -m workbook_utils.questions; edit the words there -->")
MARKED = re.compile(r"<!-- question (q\d+):")


def questions_of(number: str) -> tuple[Question, ...]:
    """The questions exercises module nbNN declares (none if it has no QUESTIONS yet)."""
    try:
        module = importlib.import_module(f"workbook_utils.exercises.nb{number}")
    except ModuleNotFoundError:
        return ()
    found = getattr(module, "QUESTIONS", ())
    return tuple(found.values()) if isinstance(found, dict) else tuple(found)


def question_markdown(question: Question, number: str) -> str:
    """The markdown cell of a question: its words, the shape of the answer, the marker."""
    lines = [f"**Exercise {question.name}.** {question.text}"]
    if question.shape:  # a code block starts a line of its own
        lines += ["", f"**Your answer:**{chr(10) * 2 if question.shape.startswith('```') else ' '}{question.shape}"]
    return "\n".join([*lines, "", MARK.format(name=question.name, number=number)])


def python_of(source: str) -> str:
    """A cell's source without IPython's magics and shell lines (`%sql …`, `%%sql` cells, `!pip …`)."""
    if source.lstrip().startswith("%%"):
        return ""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def _statements(source: str) -> list[ast.stmt]:
    try:
        return ast.parse(python_of(source), feature_version=(3, 11)).body
    except SyntaxError:  # top-level await (notebook 02's asyncio cells) and the like: nothing to find there
        return []


def _checked_names(statement: ast.stmt, name: str) -> set[str] | None:
    """The names passed to `name.check(…)` if `statement` is that call, else None."""
    call = statement.value if isinstance(statement, ast.Expr) else None
    if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "check" \
            and isinstance(call.func.value, ast.Name) and call.func.value.id == name:
        return {n.id for arg in [*call.args, *(k.value for k in call.keywords)] for n in ast.walk(arg)
                if isinstance(n, ast.Name)}
    return None


def _defined(statement: ast.stmt) -> set[str]:
    """Names a top-level statement defines (imports aside: an import is no answer)."""
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {statement.name}
    if isinstance(statement, (ast.Assign, ast.AnnAssign)):
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return set()


def check_cell(nb: nbformat.NotebookNode, name: str) -> tuple[int, set[str]] | None:
    """(index of the cell that checks exercise `name`, the names its check passes), or None."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            for statement in _statements(cell.source):
                if (passed := _checked_names(statement, name)) is not None:
                    return i, passed
    return None


def answer_cell(nb: nbformat.NotebookNode, name: str) -> int | None:
    """Index of exercise `name`'s answer cell (see the module's docstring), or None if no cell checks it."""
    found = check_cell(nb, name)
    if found is None:
        return None
    i, passed = found
    above = nb.cells[i - 1] if i > 0 else None
    if above is not None and above.cell_type == "code":
        statements = _statements(above.source)
        if any(_defined(s) & passed for s in statements) and not any(_checked_names(s, name) is not None
                                                                      for s in statements):
            return i - 1
    return i


def _marked(cell: Any) -> str | None:
    """The exercise a generated question cell belongs to, or None."""
    found = MARKED.search(cell.source) if cell.cell_type == "markdown" else None
    return found.group(1) if found else None


def write_questions(nb: nbformat.NotebookNode, number: str, questions: tuple[Question, ...]) -> bool:
    """Put each question's cell right above its answer cell (updated in place, moved or inserted); True if changed."""
    import nbformat

    before = [(c.get("id"), c.cell_type, c.source) for c in nb.cells]
    names = {q.name for q in questions}
    nb.cells = [c for i, c in enumerate(nb.cells)  # a question cell no longer above its answer, or of no exercise
                if _marked(c) is None or (_marked(c) in names and _above_its_answer(nb, i))]
    for question in questions:
        i = answer_cell(nb, question.name)
        if i is None:
            continue  # not in the notebook (yet): question_problems says so
        text = question_markdown(question, number)
        if i > 0 and _marked(nb.cells[i - 1]) == question.name:
            nb.cells[i - 1].source = text
        else:
            cell = nbformat.v4.new_markdown_cell(text)
            cell.id = _free_id(nb, f"{number}-{question.name}-question")
            nb.cells.insert(i, cell)
    return [(c.get("id"), c.cell_type, c.source) for c in nb.cells] != before


def _above_its_answer(nb: nbformat.NotebookNode, i: int) -> bool:
    return i + 1 < len(nb.cells) and answer_cell(nb, _marked(nb.cells[i])) == i + 1


def _free_id(nb: nbformat.NotebookNode, wanted: str) -> str:
    taken = {c.get("id") for c in nb.cells}
    return next(f"{wanted}{suffix}" for suffix in ["", *(f"-{n}" for n in range(2, 100))]
                if f"{wanted}{suffix}" not in taken)


def question_problems(nb: nbformat.NotebookNode, number: str, questions: tuple[Question, ...]) -> list[str]:
    """Where a notebook's question cells differ from its checkers' questions (empty when they agree)."""
    problems, names = [], {q.name for q in questions}
    for question in questions:
        i = answer_cell(nb, question.name)
        if i is None:
            problems.append(f"{question.name}: no cell of the notebook checks it ({question.name}.check(…))")
        elif i == 0 or _marked(nb.cells[i - 1]) != question.name:
            problems.append(f"{question.name}: the cell above its answer cell is not its question")
        elif nb.cells[i - 1].source != question_markdown(question, number):
            problems.append(f"{question.name}: the question cell's words differ from the checker's")
    problems += [f"{name}: a question cell of an exercise the checkers do not declare"
                 for name in sorted({_marked(c) for c in nb.cells} - names - {None})]
    return problems


def update_questions(paths: list[Path] | None = None) -> list[Path]:
    """Write the question cells of every notebook (or of `paths`); the notebooks that changed."""
    import nbformat

    changed = []
    for path in paths or notebook_paths():
        questions = questions_of(path.name[:2])
        nb = nbformat.read(path, as_version=4)
        if questions and write_questions(nb, path.name[:2], questions):
            nbformat.write(nb, path)
            changed.append(path)
    return changed


def main(argv: list[str]) -> int:
    """`python -m workbook_utils.questions [--check] [notebooks/NN_….ipynb …]`."""
    import nbformat

    paths = [Path(a) for a in argv if a != "--check"] or notebook_paths()
    if "--check" in argv:
        problems = [f"{p.name}: {problem}" for p in paths
                    for problem in question_problems(nbformat.read(p, as_version=4), p.name[:2], questions_of(p.name[:2]))]
        print("\n".join(problems) or "every question cell matches its checker")
        return 1 if problems else 0
    for path in update_questions(paths):
        print(f"questions written: {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
