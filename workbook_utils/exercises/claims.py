"""Which part of an exercise's claim a failed check says failed, as a short label the facilitator's room can group
(issue 26 §4): "“no deadlock in any interleaving” does not hold" → "no deadlock in any interleaving".

The label is cut from the checker's own words, never the learner's: an explicit `claim=` on the raised `WrongKind`
wins; else the words a checker quotes (“…”); else the message's first clause with every quoted or parenthesised
part (where a checker echoes an answer: `(got: 'lazy')`, `('SELECT …')`) and every number taken out.
"""

from __future__ import annotations

import re

MAX = 80  # characters of a label
DRAWN = re.compile(r"\s*\[drawn: .*$", re.S)  # the conditions a drawn check appends (ids, sizes)
QUOTED = re.compile(r"“([^”]{1,200})”")
RAISED = re.compile(r"^running your answer raised (\w+)")
PARENS = re.compile(r"\([^()]*\)")
STRINGS = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`|‘[^’]*’")
CLAUSE = re.compile(r"[:;—]| - |, not ")  # "…, not a str": what follows names the answer


def claim_of(message: str | None) -> str:
    """The short label of a failed check's message (see the module's docstring); "" for no message."""
    if not message:
        return ""
    text = DRAWN.sub("", message).strip()
    if quoted := QUOTED.search(text):
        return _short(quoted.group(1))
    if raised := RAISED.match(text):
        return f"running the answer raised {raised.group(1)}"  # the class of the error, not its text
    while PARENS.search(text):
        text = PARENS.sub("", text)
    text = STRINGS.sub("", text.split("(")[0])  # an unclosed parenthesis: nothing after it
    text = CLAUSE.split(text, maxsplit=1)[0]
    text = re.sub(r"\d+(?:\.\d+)?", "N", re.sub(r"\s+,", ",", text))
    return _short(text)


def _short(text: str) -> str:
    """One line of at most MAX characters, without trailing punctuation."""
    text = " ".join(text.split()).strip(" .")
    return text if len(text) <= MAX else text[:MAX - 1].rstrip() + "…"
