"""`workbook run` handouts: the index page, the solutions edition, and how an answer is put into an exercise cell.

The solutions edition is proven on notebook 02 only (tests/test_notebooks.py is the one full run of each).
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import os
import re
import subprocess
import sys

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

from workbook_utils.notebook_files import CHECK, execute, intro, notebook_paths, reason, with_solution


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.name)
def test_every_introduction_gives_what_the_index_shows(path):
    about = intro(path)
    assert about.title.startswith(path.name[:2] + " · ")
    assert 3 <= len(about.learn) <= 5 and all(b and "\n" not in b for b in about.learn)
    assert about.minutes >= 20 and f"{about.minutes} min" in about.time


def test_a_blank_answer_is_replaced_and_the_comment_beside_it_goes_with_it():
    cell = 'print(q2.question)\nq2.check(____)  # the SQL text of your query, as a string'
    assert with_solution(cell, 'q2.check("SELECT 1")') == 'print(q2.question)\nq2.check("SELECT 1")'


def test_a_starter_function_is_replaced_and_the_rest_of_the_cell_kept():
    cell = ("q1 = load()\n\ndef report(session):\n    '''starter'''\n    return wrong(session)\n\n"
            "def page(users):\n    return users\n\nrows = page(report(s))\nq1.check(report)")
    solution = "def report(session):\n    return right(session)\n\nq1.check(report)"
    merged = with_solution(cell, solution)
    assert merged == ("q1 = load()\n\ndef report(session):\n    return right(session)\n\n"
                      "def page(users):\n    return users\n\nrows = page(report(s))\nq1.check(report)")


def test_an_assigned_answer_is_replaced_and_the_solution_imports_go_before_it():
    cell = "print(q3.question)\nanswer = ____  # a select(...)\nq3.check(answer)"
    solution = "from sqlalchemy import select\nanswer = (select(1)\n          .limit(5))"
    assert with_solution(cell, solution) == ("print(q3.question)\nfrom sqlalchemy import select\n"
                                             "answer = (select(1)\n          .limit(5))\nq3.check(answer)")


def test_a_solution_that_leaves_a_blank_or_matches_nothing_is_refused():
    with pytest.raises(ValueError, match="____ is left"):
        with_solution("x = ____\nq1.check(____)", "q1.check(x)")
    with pytest.raises(ValueError, match="nothing in common"):
        with_solution("q1.check(____)", "print('hello')")


def test_run_writes_the_index_and_the_solutions_edition_of_02(tmp_path):
    """`workbook run 00` beside `workbook run --solutions 02` (its Part 2 cell that loads the exercises and checks one
    is the hard case of the edition), into a folder of the test's own."""
    build = tmp_path / "build"
    runs = [subprocess.Popen([sys.executable, "-m", "workbook_utils.cli", *args, "--build", str(build)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for args in (["run", "00"], ["run", "--solutions", "02"])]  # side by side: two notebooks, two kernels
    try:
        for run in runs:
            said = run.communicate(timeout=300)[0]
            assert run.returncode == 0, said
    finally:
        for run in runs:
            run.kill()  # a run that timed out, or the other one after a failure (a no-op once it has ended)
    index = (build / "index.html").read_text()
    assert index.count("<tr>") == len(notebook_paths()) + 1 and '<a href="00_start_here.html">' in index
    minutes = f"{intro(notebook_paths()[0]).minutes} minutes"  # 00's own Time line, re-timed with the notebook
    assert "(not rendered)" in index and minutes in index and "<code>%sql</code>" in index
    assert "solutions edition" not in index
    assert "<section>" in (build / "checklist.html").read_text()  # the handout, beside the pages (test_checklist.py)
    page = (build / "00_start_here.html").read_text()
    assert "not attempted yet" in page and "✅" not in page  # the learners' edition: blanks left blank
    solutions = build / "solutions"
    assert "solutions edition" in (solutions / "index.html").read_text()
    for name, checks in (("02_n_plus_one_and_eager_loading", 3),):
        page = (solutions / f"{name}.html").read_text()
        assert re.search(r"<h1[^>]*>\d\d · [^<]* — solutions edition", page), name
        assert page.count("correct.") == checks and "❌" not in page and "not attempted" not in page
        assert 'href="index.html"' in page  # "Contents" leads to the index beside the pages


# Names a checker supplies itself: it writes the answer's source into a migration (05) or a test module (07).
SUPPLIED = {"05": {"op", "sa", "context"}, "07": {"order_history"}}  # 05: nb05.HEADER imports them


def _solutions(module: object) -> list[tuple[str, str]]:
    """(exercise, solution code) of each Exercise(name=…, solution_code=…) in an exercise module's source."""
    found = []
    for call in ast.walk(ast.parse(inspect.getsource(module))):
        keywords = {k.arg: k.value for k in getattr(call, "keywords", [])} if isinstance(call, ast.Call) else {}
        if {"name", "solution_code"} <= set(keywords):
            name, code = (eval(compile(ast.Expression(keywords[k]), "<solution>", "eval"), vars(module))  # noqa: S307
                          for k in ("name", "solution_code"))  # a literal, or Q1.name
            found.append((name, code))
    return found


def _bound(source: str) -> set[str]:
    """Every name a cell (IPython magics translated) or a solution binds: imports, assignments, definitions."""
    names = set()
    for node in ast.walk(ast.parse(TransformerManager().transform_cell(source))):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.name)
def test_every_printed_solution_uses_only_names_its_notebook_defines(path):
    """The solutions edition runs 02 only (above); this reads every notebook: a solution that uses a name its
    notebook never imports (06's q3 once wrote insert where the notebook imports pg_insert) fails in the learner's
    notebook and in the solutions edition."""
    module = importlib.import_module(f"workbook_utils.exercises.nb{path.name[:2]}")
    cells = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    solutions = _solutions(module)
    assert len(solutions) >= 3
    for name, code in solutions:
        where = next(i for i, cell in enumerate(cells) if name in CHECK.findall(cell))
        defined = set().union(*map(_bound, cells[:where + 1]), _bound(code), dir(builtins),
                              SUPPLIED.get(path.name[:2], ()))
        used = {n.id for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        assert used <= defined, f"{name}'s solution uses {sorted(used - defined)}, undefined in {path.name}"


def test_a_failed_notebook_is_reported_in_one_line_that_names_the_failing_assert(tmp_path):
    """`workbook run` prints this line per failed notebook (a bare assert used to print only "AssertionError:")."""
    path = tmp_path / "99_broken.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("total = 1\nassert total == 2")]), path)
    with pytest.raises(Exception) as failed:
        execute(path, timeout=60)
    assert reason(failed.value) == "AssertionError in line 2 of the cell: assert total == 2"
    with pytest.raises(Exception) as failed:
        execute(path.with_name("99_missing.ipynb"))
    assert "99_missing.ipynb" in reason(failed.value)


def test_a_restart_before_a_cell_forgets_every_name_and_keeps_the_kernels_environment(tmp_path):
    """What the room's second learner does at each Part: Kernel → Restart, then the Part's restart cell."""
    path = tmp_path / "99_restart.ipynb"
    cells = ["import os\nseen = os.environ['WORKBOOK_PROBE']", "assert seen == 'probe'",
             "assert 'seen' not in globals() and os.environ.get('WORKBOOK_PROBE') == 'probe'"]
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), path)
    env = {**os.environ, "WORKBOOK_PROBE": "probe"}
    with pytest.raises(Exception, match="assert 'seen' not in globals"):
        execute(path, timeout=60, env=env)  # without a restart the last cell still sees `seen`: it fails
    with pytest.raises(Exception, match="NameError"):
        execute(path, timeout=60, env=env, restart_at={1})  # the restart came before the cell that reads it
    cells[2] = "import os\n" + cells[2]
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), path)
    execute(path, timeout=60, env=env, restart_at={2})


def test_a_rerun_function_is_read_only_after_the_run(tmp_path):
    """The notebook test's kernels decide which Parts to run again when they get there (test_notebooks.LaterParts)."""
    path = tmp_path / "99_again.ipynb"
    cells = ["n = 0", "import pathlib\nn += 1\npathlib.Path('ran').touch()\nprint(n)"]
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), path)

    def again(nb: nbformat.NotebookNode):
        yield from [1] if (tmp_path / "ran").exists() else []  # read before the run, it would run nothing again

    executed = execute(path, timeout=60, rerun=again)
    assert executed.cells[1].outputs[0]["text"] == "2\n"
