"""The question cells tool and the anatomy checks, on small synthetic notebooks (the real ones follow later)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from workbook_utils import anatomy, questions
from workbook_utils.exercises import Question

Q1 = Question(name="q1", text="Count the users who have no profile.", shape="SQL text, e.g. `\"SELECT count(*) FROM …\"`")
Q2 = Question(name="q2", text="Make handle() give its connection back before the slow work.",
              shape="`def handle(engine, user_id)`")


def notebook(*cells: tuple[str, str]) -> nbformat.NotebookNode:
    """A notebook of ("md" | "code", source) cells, with ids as nbformat gives them."""
    make = {"md": nbformat.v4.new_markdown_cell, "code": nbformat.v4.new_code_cell}
    return nbformat.v4.new_notebook(cells=[make[kind](source) for kind, source in cells])


EXERCISES = notebook(
    ("md", "# 99 · Synthetic"),
    ("code", 'from workbook_utils import setup\n\nwb = setup("99")'),
    ("md", "## Exercises"),
    ("code", "from workbook_utils.exercises import ____, nb99\n\nq1, q2 = nb99.load(wb)"),
    ("code", "q1.check(____)  # your SQL, as a string"),
    ("code", "def handle(engine, user_id):\n    return 1"),
    ("code", "q2.check(handle)"),
)


def sources(nb) -> list[str]:
    return [c.source for c in nb.cells]


def test_the_answer_cell_is_the_check_cell_or_the_cell_defining_what_it_passes():
    assert questions.answer_cell(EXERCISES, "q1") == 4  # the load cell above imports ____ but defines no answer
    assert questions.answer_cell(EXERCISES, "q2") == 5  # handle is defined in the cell above the check
    assert questions.answer_cell(EXERCISES, "q3") is None
    magic = notebook(("code", "%sql SELECT 1\nq1.check(answer)"), ("code", "%%sql\nSELECT 1"))
    assert questions.answer_cell(magic, "q1") == 0


def test_question_cells_are_written_above_their_answer_cells_once_and_kept_current():
    nb = nbformat.from_dict(EXERCISES)
    assert questions.question_problems(nb, "99", (Q1, Q2)) == [
        "q1: the cell above its answer cell is not its question", "q2: the cell above its answer cell is not its question"]
    assert questions.write_questions(nb, "99", (Q1, Q2))
    assert sources(nb)[4] == questions.question_markdown(Q1, "99") and sources(nb)[5] == EXERCISES.cells[4].source
    assert sources(nb)[6] == questions.question_markdown(Q2, "99") and sources(nb)[7].startswith("def handle")
    assert nb.cells[4].id == "99-q1-question" and len({c.id for c in nb.cells}) == len(nb.cells)
    assert questions.question_problems(nb, "99", (Q1, Q2)) == []
    assert not questions.write_questions(nb, "99", (Q1, Q2))  # a second run changes nothing
    reworded = Question(name="q1", text="Count the users without a profile row.", shape=Q1.shape)
    assert questions.question_problems(nb, "99", (reworded, Q2)) == ["q1: the question cell's words differ from the "
                                                                     "checker's"]
    assert questions.write_questions(nb, "99", (reworded, Q2)) and len(nb.cells) == len(EXERCISES.cells) + 2
    assert "Count the users without a profile row." in sources(nb)[4]
    nbformat.validate(nb)


def test_a_question_cell_that_strayed_or_lost_its_exercise_is_reported_and_removed():
    nb = nbformat.from_dict(EXERCISES)
    questions.write_questions(nb, "99", (Q1, Q2))
    nb.cells.insert(2, nb.cells.pop(4))  # q1's question moved away from its answer cell
    assert questions.question_problems(nb, "99", (Q1, Q2)) == ["q1: the cell above its answer cell is not its question"]
    assert questions.question_problems(nb, "99", (Q1,)) == [
        "q1: the cell above its answer cell is not its question",
        "q2: a question cell of an exercise the checkers do not declare"]
    questions.write_questions(nb, "99", (Q1,))
    assert [questions._marked(c) for c in nb.cells].count("q1") == 1 and questions._marked(nb.cells[4]) == "q1"
    assert all(questions._marked(c) != "q2" for c in nb.cells)


def test_question_markdown_says_the_question_then_the_shape_then_where_it_comes_from():
    text = questions.question_markdown(Q2, "01")
    assert text.splitlines()[0] == f"**Exercise q2.** {Q2.text}"
    assert f"**Your answer:** {Q2.shape}" in text and "workbook_utils/exercises/nb01.py" in text.splitlines()[-1]


def test_a_shape_that_is_a_code_block_starts_on_a_line_of_its_own():
    block = Question(name="q1", text="Write f.", shape="```python\ndef f(x):\n    return …\n```")
    assert "**Your answer:**\n\n```python\ndef f(x):" in questions.question_markdown(block, "99")


@pytest.mark.parametrize("number", ["00", "01", "02"])
def test_every_question_of_00_to_02_shows_a_shape_and_discusses_its_wrong_answers(number):
    for question in questions.questions_of(number):
        assert question.text and question.shape and question.hint_text and question.solution_code, question.name
        assert question.discussion.startswith("Why it works: ") and "\nCommon wrong answers:\n- " in question.discussion


def test_notebooks_without_questions_yet_are_left_alone(tmp_path):
    path = tmp_path / "99_synthetic.ipynb"
    nbformat.write(EXERCISES, path)
    assert questions.questions_of("99") == () and questions.update_questions([path]) == []


# ── Anatomy ──────────────────────────────────────────────────────────────────────────────────────────────────────

def test_a_heading_must_be_the_first_line_of_its_cell():
    nb = notebook(("md", "# 99 · Title\n\ntext"), ("md", "Some text.\n\n## 2. A section"),
                  ("md", "```\n# a comment in a code block\n```\n\n#hashtag"))
    assert anatomy.heading_problems(nb) == ["cell 1: the heading '## 2. A section' is line 3 of its cell, not its first line"]


def test_what_to_notice_has_at_most_three_bullets():
    three = "**What to notice**\n- a\n- b\n  continued\n- c"
    nb = notebook(("md", "- before\n- it\n" + three), ("md", three + "\n1. d"), ("md", "- e\n- f\n- g\n- h"))
    assert anatomy.notice_problems(nb) == ["cell 1: What to notice has 4 bullets, not at most 3"]


PARTED = [
    ("md", "# 99 · Title"),
    ("code", 'from workbook_utils import setup\n\nwb = setup("99")'),
    ("md", "## Part 1 · Basics"),
    ("code", "import time\nfrom sqlalchemy import text\nx = 1"),
    ("code", "q1.check(x)"),
    ("md", "**Key points**\n- one"),
    ("md", "## Part 2 · More"),
    ("code", 'from workbook_utils import setup\nfrom sqlalchemy import text\n\nwb = setup("99")\ny = 2'),
    ("code", "%sql SELECT :y, '12:30'::time\nasync with wb.engine.connect() as c:\n    await c.execute(text('select 1'))"),
    ("code", "q2.check(y)"),
    ("md", "**Key points**\n- two"),
]


def test_parts_each_have_their_exercises_a_restart_cell_and_nothing_borrowed():
    nb = notebook(*PARTED)
    assert [(p.number, p.start, p.cells[0]) for p in anatomy.parts(nb)] == [(1, 2, 0), (2, 6, 6)]
    assert anatomy.part_problems(nb, "99") == [] and anatomy.restart_cells(nb) == {7}


@pytest.mark.parametrize(("change", "problem"), [
    (lambda cells: cells.__delitem__(9), "Part 2: no exercises of its own"),
    (lambda cells: cells.__setitem__(7, ("code", "y = 2")), "Part 2: its first code cell does not stand it up"),
    (lambda cells: cells.__setitem__(8, ("code", "%sql SELECT :x\nprint(time.time())")),
     "Part 2, cell 8: uses time, x from an earlier Part only"),
    (lambda cells: cells.__delitem__(4), "Part 1: no exercises"),
    (lambda cells: cells.__delitem__(10), "Part 2: no key points"),
    (lambda cells: cells.__setitem__(5, ("md", "Key points: one")), "Part 1: no key points"),
    (lambda cells: cells.__setitem__(2, ("md", "## Part 3 · Basics")), "Parts numbered [3, 2]"),
])
def test_part_problems_are_found(change, problem):
    cells = list(PARTED)
    change(cells)
    problems = anatomy.part_problems(notebook(*cells), "99")
    assert any(p.startswith(problem) for p in problems), problems


def test_a_notebook_without_part_headings_is_one_part():
    nb = notebook(("md", "# 99 · Title"), ("code", "q1.check(1)"), ("md", "**Key points**\n- one"))
    assert [(p.number, p.cells) for p in anatomy.parts(nb)] == [(1, [0, 1, 2])] and anatomy.part_problems(nb, "99") == []
    assert anatomy.restart_cells(nb) == set()


def test_the_tool_writes_the_questions_of_notebooks_00_to_02_on_copies(tmp_path):
    """On copies of today's notebooks: every declared question lands above its answer cell, and the check agrees.
    (tests/test_structure.py will hold the notebooks themselves to this once they are rewritten.)"""
    import shutil

    from workbook_utils.notebook_files import notebook_paths

    copies = [Path(shutil.copy(p, tmp_path / p.name)) for p in notebook_paths()[:3]]
    unwritten = [c.name for c in copies  # a notebook already rewritten holds its questions: nothing to write there
                 if questions.question_problems(nbformat.read(c, as_version=4), c.name[:2], questions.questions_of(c.name[:2]))]
    assert sorted(p.name for p in questions.update_questions(copies)) == unwritten
    for copy in map(Path, copies):
        number, nb = copy.name[:2], nbformat.read(copy, as_version=4)
        declared = questions.questions_of(number)
        assert len(declared) == 3 and questions.question_problems(nb, number, declared) == []
        nbformat.validate(nb)
        texts = [c.source for c in nb.cells if questions._marked(c)]
        assert [t.splitlines()[0] for t in texts] == [f"**Exercise {q.name}.** {q.text}" for q in declared]
    assert questions.update_questions(copies) == []  # nothing left to write


def test_the_command_checks_and_writes_only_the_notebooks_it_is_given(tmp_path, capsys):
    path = tmp_path / "01_synthetic.ipynb"  # nb01's real questions, a notebook with its three checks
    nb = notebook(("md", "# 01 · Synthetic"), ("code", "q1.check(pool_settings)"), ("code", "q2.check(handle)"),
                  ("code", "q3.check(answer)"))
    nbformat.write(nb, path)
    assert questions.main(["--check", str(path)]) == 1 and "q1: the cell above" in capsys.readouterr().out
    assert questions.main([str(path)]) == 0 and "questions written: 01_synthetic.ipynb" in capsys.readouterr().out
    assert questions.main(["--check", str(path)]) == 0
