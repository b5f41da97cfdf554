"""Exercises that check themselves: `q1.check(answer)`, `q1.hint()`, `q1.solution()`.

Expected values come from running each exercise's reference solution against the database,
never from numbers typed in. A `____` placeholder means "not attempted", which differs from wrong;
so does starter code handed back unchanged (the buggy function a question asks the learner to fix).
Each checked answer is also recorded in the learner's own database for the facilitator's view (room.py).

A `Question` holds an exercise's words: what the notebook shows above the answer cell (the question and the shape of
the answer, written into the notebook by `python -m workbook_utils.questions`), the hint, the solution, and the
discussion a learner reads after a correct answer (printed under the ✅, and by `q1.discuss()`).
An exercise built `drawn=True` is checked under conditions drawn afresh each time (`draws.Draw`): its reference and
evaluate functions take the draw, and a failed check prints what was drawn and the seed that draws it again.

The building blocks for checkers live beside this module, one idea each: `draws` (random conditions), `cells` (the
learner's whole cell as a module), `faults` (real server errors injected into a retry loop, sleeps observed),
`interleavings` (every order of concurrent transactions, cycles of three included) and `sqltree` (SQL read with
PostgreSQL's own parser).
"""

from __future__ import annotations

import ast
import inspect
import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import first_line
from .claims import claim_of
from .draws import Draw
from .pyparse import parse


class _Blank:
    """The placeholder a learner replaces with an answer."""

    def __repr__(self) -> str:
        return "____"


____ = _Blank()

CORRECT, INCORRECT, NOT_ATTEMPTED = "correct", "incorrect", "not attempted"


class WrongKind(TypeError):
    """Raised by a checker when the answer is not the kind of thing asked for; its message is shown as it is.

    `claim=` names, in a few words, the part of the exercise's claim that failed (the facilitator's room groups
    learners by it); without it, it is cut from the message (claims.claim_of).
    """

    def __init__(self, *args: Any, claim: str | None = None) -> None:
        super().__init__(*args)
        self.claim = claim


class Unmet(WrongKind):
    """Raised by a checker that names the condition under which the answer breaks its claim (a drawn deployment,
    an interleaving); its message is shown as it is."""


def _contains_blank(value: Any) -> bool:
    if value is ____:
        return True
    if isinstance(value, (list, tuple, set)):
        return any(_contains_blank(v) for v in value)
    if isinstance(value, dict):
        return any(_contains_blank(v) for v in value.values())
    return False


def same_code(function: Any, source: str) -> bool:
    """True if `function` was defined by `source` (comments and layout aside): the starter, not yet changed."""
    try:
        mine = parse(textwrap.dedent(inspect.getsource(function)))
    except (TypeError, OSError, SyntaxError):  # not a function, or its source is not available
        return False
    theirs = parse(textwrap.dedent(source))
    named = [n for n in theirs.body if isinstance(n, ast.FunctionDef) and n.name == function.__name__]
    return bool(named) and ast.dump(mine.body[0]) == ast.dump(named[0])


def first_difference(answer: Any, expected: Any, where: str = "your answer") -> str | None:
    """Describe the first way `answer` differs from `expected` without revealing `expected`; None if equal."""
    if hasattr(answer, "to_dict") and hasattr(answer, "columns"):  # a DataFrame: compare its rows
        answer = [tuple(r) for r in answer.itertuples(index=False)]
    if isinstance(expected, bool):
        if answer is expected:
            return None
        return f"“{where}” does not hold" if expected else f"“{where}” should not hold"
    if isinstance(expected, dict):
        if not isinstance(answer, dict) or answer.keys() != expected.keys():
            return f"{where} should be a dict with the keys {', '.join(map(repr, expected))}"
        return next((d for k in expected if (d := first_difference(answer[k], expected[k], _within(where, k)))
                     is not None), None)
    if isinstance(expected, (int, float)):
        if not isinstance(answer, (int, float)) or isinstance(answer, bool):
            return f"{where} should be a number, not {type(answer).__name__}"
        if math.isclose(answer, expected, rel_tol=1e-6, abs_tol=1e-9):
            return None
        return f"{where} is too {'high' if answer > expected else 'low'}"
    if isinstance(expected, (list, tuple)):
        if not isinstance(answer, (list, tuple)):
            return f"{where} should be a list, not {type(answer).__name__}"
        if len(answer) != len(expected):
            return f"{where} has {len(answer)} items; the expected result has {len(expected)}"
        for i, (a, e) in enumerate(zip(answer, expected, strict=True)):
            label = f"item {i}" if where == "your answer" else f"{where}, item {i}"
            if (diff := first_difference(a, e, label)) is not None:
                return diff
        return None
    if type(answer) is not type(expected) and not (isinstance(answer, str) and isinstance(expected, str)):
        return f"{where} should be a {type(expected).__name__}, not {type(answer).__name__}"
    return None if answer == expected else f"{where} ({answer!r}) is not the expected value"


def _within(where: str, key: str) -> str:
    """The label of a dict's entry: its key, after the label of the dict itself when it is nested."""
    return key if where == "your answer" else f"{where}, {key}"


@dataclass(frozen=True)
class Question:
    """An exercise's words: what the notebook shows right above its answer cell (the question, the shape of the
    answer), its hint and solution, and the discussion a learner reads after solving it."""

    name: str  # q1, q2, …: the name the notebook binds the exercise to
    text: str  # the question, word for word in the notebook's question cell and in the checker
    shape: str = ""  # the expected answer's shape (Markdown): a signature, an example row
    hint_text: str = ""
    solution_code: str = ""
    discussion: str = ""  # after a correct answer: why the reference works; common wrong answers and why they fail

    def exercise(self, **checker: Any) -> Exercise:
        """The Exercise that asks this question (`checker`: reference, evaluate, starter, drawn)."""
        return Exercise(name=self.name, question=self.text, shape=self.shape, hint_text=self.hint_text,
                        solution_code=self.solution_code, discussion=self.discussion, **checker)


@dataclass
class Exercise:
    """One question: its reference solution (run against the database), a hint, and the solution's code.

    With `drawn=True`, `reference(draw)` and `evaluate(answer, draw)` take the conditions drawn for this check.
    """

    name: str
    question: str
    reference: Callable[..., Any]
    hint_text: str
    solution_code: str
    evaluate: Callable[..., Any] = field(default=lambda answer: answer)  # e.g. run a statement the learner wrote
    starter: str = ""  # the starter code of the notebook's cell: a function it defines, unchanged, is not attempted
    shape: str = ""
    discussion: str = ""
    drawn: bool = False
    last_draw: Draw | None = field(default=None, repr=False)  # the conditions of the latest check (drawn only)
    _claim: str | None = field(default=None, repr=False)  # the claim= of the WrongKind the latest check raised
    _expected: Any = field(default=____, repr=False)

    @property
    def expected(self) -> Any:
        """The reference's value (an exercise that is not drawn runs its reference once; again at the next check if
        one of its claims failed, as a run on a busy server can: that run must not fail every later check)."""
        if self.drawn:
            return self.reference(self.last_draw or Draw())
        if self._expected is not ____:
            return self._expected
        value = self.reference()
        claim_failed = isinstance(value, dict) and not all(v is True for v in value.values())
        if not claim_failed:
            self._expected = value
        return value

    def verdict(self, answer: Any, seed: int | None = None) -> tuple[str, str | None]:
        """(correct | incorrect | not attempted, first difference) without printing."""
        if _contains_blank(answer) or (self.starter and callable(answer) and same_code(answer, self.starter)):
            return NOT_ATTEMPTED, None
        draw = self.last_draw = Draw(seed) if self.drawn else None
        try:
            value = self.evaluate(answer, draw) if draw else self.evaluate(answer)
        except WrongKind as exc:
            self._claim = exc.claim
            return INCORRECT, _with_draw(str(exc), draw, self.name)
        except Exception as exc:  # a learner's statement that fails is an incorrect answer, not a crash
            return INCORRECT, _with_draw(f"running your answer raised {type(exc).__name__}: {first_line(exc)}", draw,
                                         self.name)
        diff = first_difference(value, self.reference(draw) if draw else self.expected)
        return (CORRECT, None) if diff is None else (INCORRECT, _with_draw(diff, draw, self.name))

    def check(self, answer: Any, seed: int | None = None) -> None:
        """Say whether `answer` is right; when it is not, name the first difference (prints; returns nothing).

        `seed` replays the conditions a failed check printed (exercises whose conditions are drawn).
        """
        self._claim = None
        status, diff = self.verdict(answer) if seed is None else self.verdict(answer, seed=seed)  # subclasses too
        messages = {CORRECT: f"✅ {self.name}: correct.",
                    NOT_ATTEMPTED: f"… {self.name}: not attempted yet — replace ____ (or change the starter code) "
                                   "with your answer.",
                    INCORRECT: f"❌ {self.name}: not yet — {diff}. Try {self.name}.hint()."}
        print(messages[status])
        if status == CORRECT and self.discussion:
            print(f"\n{self.discussion}")
        if status != NOT_ATTEMPTED:
            self._record(status == CORRECT, "" if status == CORRECT else self._claim or claim_of(diff))

    def _record(self, solved: bool, claim: str = "") -> None:
        """Count this attempt in the learner's database for the facilitator's room view (a failed one with the part of
        the claim that failed, never the answer); never fails the check."""
        notebook = self.reference.__module__.rpartition(".")[2].removeprefix("nb")  # declared in exercises/nbNN.py
        try:
            from ..outcomes import record_here

            record_here(notebook, self.name, solved, claim)
        except Exception:  # best effort: no server, no marker schema, a timeout … the learner's cell goes on
            pass

    def hint(self) -> None:
        print(f"💡 {self.hint_text}")

    def solution(self) -> None:
        print(self.solution_code)

    def discuss(self) -> None:
        """Why the reference works, and the wrong answers people often give (also printed after a correct check)."""
        print(self.discussion or f"{self.name} has no discussion yet: {self.name}.solution() shows the answer.")


def _with_draw(diff: str, draw: Draw | None, name: str) -> str:
    """A failed check's message with the conditions it drew, and how to draw them again."""
    if draw is None or not draw.values:
        return diff
    return f"{diff} [drawn: {draw.describe()}; {name}.check(answer, seed={draw.seed}) draws the same]"
