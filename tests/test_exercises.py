"""The exercises API: first differences never reveal the answer; ____ and unchanged starter code are not attempted."""

from __future__ import annotations

from workbook_utils.exercises import CORRECT, INCORRECT, NOT_ATTEMPTED, Exercise, ____, first_difference, same_code


def test_first_difference_never_reveals_the_expected_value():
    assert first_difference(3, 3) is None
    assert first_difference(4, 3) == "your answer is too high"
    assert first_difference("3", 3) == "your answer should be a number, not str"
    assert first_difference([1, 2], [1, 2, 3]) == "your answer has 2 items; the expected result has 3"
    assert first_difference([(1, 5), (2, 4)], [(1, 5), (2, 9)]) == "item 1, item 1 is too low"
    assert "secret" not in first_difference("guess", "secret")


def test_first_difference_of_dicts_and_claims():
    assert first_difference({"fits": True}, {"fits": True}) is None
    assert first_difference({"fits": False}, {"fits": True}) == "“fits” does not hold"
    assert first_difference({"n": 3}, {"n": 2}) == "n is too high"
    assert first_difference([1], {"n": 2}) == "your answer should be a dict with the keys 'n'"


STARTER = """
def handle(n):
    # the buggy version: fix me
    return n + 1
"""


def test_unchanged_starter_code_is_not_attempted_and_a_changed_one_is_checked(tmp_path):
    import importlib.util

    def load(source: str):
        path = tmp_path / f"m{abs(hash(source))}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.handle

    unchanged = load("\n\n" + STARTER.replace("    # the buggy version: fix me\n", ""))  # comments do not count
    changed = load(STARTER.replace("n + 1", "n + 2"))
    assert same_code(unchanged, STARTER) and not same_code(changed, STARTER) and not same_code(len, STARTER)
    q = Exercise("q", "add two", reference=lambda: 5, hint_text="", solution_code="", evaluate=lambda f: f(3),
                 starter=STARTER)
    assert q.verdict(unchanged) == (NOT_ATTEMPTED, None)
    assert q.verdict(changed) == (CORRECT, None)
    assert q.verdict(lambda n: n)[0] == INCORRECT
    assert q.verdict(____) == (NOT_ATTEMPTED, None)


def test_an_answer_of_the_wrong_kind_is_told_what_is_asked_for():
    from workbook_utils.exercises import WrongKind

    def needs_text(answer):
        if not isinstance(answer, str):
            raise WrongKind("pass the SQL text of your query")
        return answer

    q = Exercise("q", "?", reference=lambda: "SELECT 1", hint_text="", solution_code="", evaluate=needs_text)
    assert q.verdict(42) == (INCORRECT, "pass the SQL text of your query")
