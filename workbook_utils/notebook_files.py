"""Find, execute and render the notebooks (used by `workbook run` and the notebook tests): pages, their index,
the solutions edition, and the generated lines (navigation, the facilitator's schedule)."""

from __future__ import annotations

import ast
import html
import itertools
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import config

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable

    import nbformat
    from nbclient import NotebookClient


def notebook_paths() -> list[Path]:
    """notebooks/NN_*.ipynb in order."""
    return sorted((config.project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))


NAV = re.compile(r"<!-- nav -->.*?<!-- /nav -->", re.S)


def title(path: Path) -> str:
    """A notebook's H1, e.g. "01 · Connection pooling"."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return next(line[2:] for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines()
                if line.startswith("# "))


def nav_line(paths: list[Path], i: int) -> str:
    """The navigation line of notebook i: previous, contents, next (generated from file names and titles)."""
    parts = [f"← [{title(paths[i - 1])}]({paths[i - 1].name})"] if i > 0 else []
    parts.append("[Contents](../README.md#notebooks)")
    if i + 1 < len(paths):
        parts.append(f"[{title(paths[i + 1])}]({paths[i + 1].name}) →")
    # The markers stand on lines of their own: a line that starts with "<!--" is raw HTML in Markdown,
    # and links on it would show as text.
    return f"<!-- nav -->\n{' · '.join(parts)}\n<!-- /nav -->"


def update_navigation() -> list[Path]:
    """Rewrite every notebook's <!-- nav --> lines in place; the notebooks that changed."""
    import nbformat

    paths, changed = notebook_paths(), []
    for i, path in enumerate(paths):
        nb = nbformat.read(path, as_version=4)
        line, before = nav_line(paths, i), [cell.source for cell in nb.cells]
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = NAV.sub(line, cell.source)
        if [cell.source for cell in nb.cells] != before:  # only a changed nav line rewrites a notebook
            nbformat.write(nb, path)
            changed.append(path)
    return changed


@dataclass
class Intro:
    """What a notebook's introduction promises: its title, "You will learn" bullets (Markdown) and time."""

    title: str
    learn: list[str]
    time: str  # the first sentence of its "Time:" line, e.g. "about 70 minutes in a workshop, in two parts …"
    minutes: int


def intro(path: Path) -> Intro:
    """Read a notebook's first screen: its markdown cells before the setup cell (the anatomy every notebook follows)."""
    import itertools

    import nbformat

    cells = nbformat.read(path, as_version=4).cells
    text = "\n\n".join(c.source for c in itertools.takewhile(lambda c: c.cell_type == "markdown", cells))
    learn = re.search(r"\*\*You will learn\*\*\n(.*?)(?:\n\n|$)", text, re.S)
    bullets = re.split(r"\n- ", "\n" + learn.group(1).strip())[1:] if learn else []
    found = re.search(r"\*\*Time:\*\*\s*(.*?)(?:[.:]\s*\n|\.?\s*$|\n\n)", text, re.S)
    spoken = " ".join(found.group(1).split()) if found else ""
    minutes = re.search(r"(\d+) min", spoken)
    return Intro(title(path), [" ".join(b.split()) for b in bullets], spoken, int(minutes.group(1)) if minutes else 0)


def _client(nb: nbformat.NotebookNode, path: Path, timeout: int, kernel_dir: str) -> NotebookClient:
    """A notebook client whose kernel talks over unix sockets where there are some (TCP makes ipykernel warn)."""
    import os

    from nbclient import NotebookClient
    from traitlets.config import Config

    config = Config()
    if os.name == "posix":
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = str(Path(kernel_dir) / "kernel")
    return NotebookClient(nb, timeout=timeout, kernel_name="python3", config=config,
                          resources={"metadata": {"path": str(path.parent)}})


def poll_in_slices(channel: Any, every: float = 1.0) -> None:
    """Make `channel.get_msg` wait in slices of `every` s: a reply whose wakeup the poll missed (seen with widget
    cells, as in jupyter/nbclient#312: 04's race player waited the whole 600 s cell timeout, then went on) is then
    read a second later."""
    from queue import Empty

    get_msg = channel.get_msg

    async def sliced(timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = every if deadline is None else min(every, max(0.0, deadline - time.monotonic()))
            try:
                return await get_msg(timeout=left)
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    channel.get_msg = sliced


def lesson_cells(nb: nbformat.NotebookNode) -> list[int]:
    """Indexes of the code cells after the setup cell: what a learner runs again after finishing the notebook."""
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    return code[1:]


def execute(path: Path, timeout: int = 600, rerun: bool | Callable[[nbformat.NotebookNode], Iterable[int]] = False,
            cells: list[int] | None = None,
            solutions: bool = False, env: dict[str, str] | None = None,
            step: Callable[[int], None] | None = None, restart_at: Collection[int] = ()) -> nbformat.NotebookNode:
    """Run a notebook top to bottom on a fresh kernel (in its own folder); raises on the first failing cell.

    With `rerun`, the lesson cells then run once more in the same kernel, as a learner who goes back does; a function
    of the notebook gives the cells to run again instead (read lazily, after the run: it may decide as it goes).
    With `cells`, only the cells at these indexes run, in that order (e.g. the setup cell, then one part).
    With `solutions`, each exercise cell first gets its reference answer (see `with_solution`), and its check
    must say it is correct: the solutions edition.
    With `env`, the kernel gets that environment instead of this process's (e.g. its own DATABASE_URL);
    `step(index)` is called before each cell runs (e.g. to keep two kernels in step).
    With `restart_at`, the kernel restarts before the cells at these indexes, as a learner's Kernel → Restart does
    (e.g. before each Part's restart cell).
    """
    import tempfile

    import nbformat

    nb = nbformat.read(path, as_version=4)
    order = range(len(nb.cells)) if cells is None else cells
    with tempfile.TemporaryDirectory(prefix="workbook-kernel-") as kernel_dir:
        client = _client(nb, path, timeout, kernel_dir)
        with client.setup_kernel(**({} if env is None else {"env": env})):
            for channel in (client.kc.shell_channel, client.kc.iopub_channel):
                poll_in_slices(channel)
            again = lesson_cells(nb) if rerun is True else rerun(nb) if rerun else []
            for index in itertools.chain(order, again):
                if step is not None:
                    step(index)
                if index in restart_at:
                    _restart(client)
                checked = CHECK.findall(nb.cells[index].source) if solutions else []
                if any(not _solution(client, nb, name) for name in checked):
                    client.execute_cell(nb.cells[index], index)  # a cell that also loads its exercises: once as is
                for name in checked:
                    nb.cells[index].source = with_solution(nb.cells[index].source, _solution(client, nb, name))
                client.execute_cell(nb.cells[index], index)
                _assert_correct(nb.cells[index], checked)
    if solutions:
        _title_solutions(nb)
    return nb


def _restart(client: NotebookClient) -> None:
    """Restart the kernel (same environment, nothing defined) and wait until it answers."""
    from jupyter_core.utils import run_sync

    run_sync(client.km.restart_kernel)(now=True)
    run_sync(client.kc.wait_for_ready)(timeout=client.startup_timeout)


CHECK = re.compile(r"^\s*(q\d+)\.check\(", re.M)  # an exercise cell: the learner's answer goes to qN.check(…)


def _solution(client: NotebookClient, nb: nbformat.NotebookNode, name: str) -> str:
    """The reference answer's code of exercise `name`, asked from the kernel; "" while it is not loaded there."""
    import nbformat

    probe = nbformat.v4.new_code_cell(f"if {name!r} in globals():\n    {name}.solution()")
    nb.cells.append(probe)  # executed at an index of its own: nbclient writes the cell back into nb.cells
    try:
        client.execute_cell(probe, len(nb.cells) - 1, store_history=False)
    finally:
        nb.cells.pop()
    return "".join(o.get("text", "") for o in probe.outputs if o.output_type == "stream").rstrip("\n")


def _key(statement: ast.stmt) -> tuple[str, str] | None:
    """What a top-level statement defines or checks: ("def", name), ("=", name) or ("check", "qN")."""
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return "def", statement.name
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and isinstance(statement.targets[0], ast.Name):
        return "=", statement.targets[0].id
    call = getattr(statement, "value", None)
    if isinstance(statement, ast.Expr) and isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) \
            and call.func.attr == "check" and isinstance(call.func.value, ast.Name):
        return "check", call.func.value.id
    return None


def with_solution(cell: str, solution: str) -> str:
    """The exercise cell with its answer replaced by the solution's code, everything else of the cell kept.

    Each top-level statement of the solution replaces the cell's statement that defines the same name (the starter
    function, `answer = ____`) or makes the same check; the others (imports) go before the first one replaced.
    """
    lines = cell.splitlines()
    sol_lines = solution.splitlines()
    mine = {_key(s): s for s in ast.parse(cell).body if _key(s)}
    replaced: dict[int, tuple[int, list[str]]] = {}  # first line of a cell statement → (its last line, new lines)
    extra: list[str] = []
    for statement in ast.parse(solution).body:
        text = sol_lines[statement.lineno - 1 - _decorators(statement):statement.end_lineno]
        target = mine.get(_key(statement))
        if target is None:
            extra += text
        else:
            replaced[target.lineno - 1 - _decorators(target)] = (target.end_lineno, text)
    if not replaced:
        raise ValueError(f"the solution has nothing in common with the cell:\n{solution}")
    out, i, first = [], 0, min(replaced)
    while i < len(lines):
        if i == first:
            out += extra
        if i in replaced:
            end, text = replaced[i]
            out += text
            i = end
        else:
            out.append(lines[i])
            i += 1
    merged = "\n".join(out)
    if any(isinstance(n, ast.Name) and n.id == "____" for n in ast.walk(ast.parse(merged))):
        raise ValueError(f"a ____ is left after putting in the solution:\n{merged}")
    return merged


def _decorators(statement: ast.stmt) -> int:
    """Lines of decorators above a definition (its lineno is the `def` line)."""
    decorators = getattr(statement, "decorator_list", [])
    return statement.lineno - decorators[0].lineno if decorators else 0


def _assert_correct(cell: nbformat.NotebookNode, names: list[str]) -> None:
    """In the solutions edition, each check in the cell must have said its answer is correct."""
    if not names:
        return
    said = "".join(str(o.get("text", "")) for o in cell.outputs)
    wrong = [name for name in names if f"✅ {name}" not in said]
    if wrong:
        raise AssertionError(f"the reference answer of {', '.join(wrong)} did not pass its check: {said.strip()[-300:]}")


SOLUTIONS_NOTE = ("> **Solutions edition**, for after the workshop: every exercise below runs its reference answer, "
                  "and its check says so. Try the exercises in the notebook itself first.")


def _title_solutions(nb: nbformat.NotebookNode) -> None:
    """Title the first markdown cell "… — solutions edition" and say what the edition is under the title."""
    cell = next(c for c in nb.cells if c.cell_type == "markdown")
    cell.source = re.sub(r"^(# .*)$", lambda m: f"{m.group(1)} — solutions edition\n\n{SOLUTIONS_NOTE}",
                         cell.source, count=1, flags=re.M)


def to_html(nb: nbformat.NotebookNode, out: Path) -> Path:
    """Write an executed notebook as a standalone HTML page (charts embedded, links to the other pages)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    body = re.sub(r'href="(\d\d_[a-z0-9_]+)\.ipynb"', r'href="\1.html"', body)  # links between the rendered pages
    body = body.replace('href="../README.md#notebooks"', 'href="index.html"')  # "Contents": the index beside them
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body, encoding="utf-8")
    return out


def write_index(build: Path, solutions: bool = False) -> Path:
    """build/index.html: every notebook's title (linked when its page is there), time and "you will learn"."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    heading = "The database-integration workbook" + (" — solutions edition" if solutions else "")
    rows = []
    for path in notebook_paths():
        about, page = intro(path), build / f"{path.stem}.html"
        name = html.escape(about.title)
        link = f'<a href="{page.name}">{name}</a>' if page.exists() else f"{name} (not rendered)"
        learn = markdown2html_mistune("\n".join(f"- {b}" for b in about.learn))
        rows.append(f"<tr><td>{link}</td><td>{html.escape(about.time)}</td><td>{learn}</td></tr>")
    note = f"<p>{markdown2html_mistune(SOLUTIONS_NOTE[2:])}</p>" if solutions else ""
    out = build / "index.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{heading}</title>
<style>body{{font-family:sans-serif;max-width:70em;margin:2em auto}} td{{vertical-align:top;padding:.4em;
border-top:1px solid #ccc}} th{{text-align:left}}</style></head>
<body><h1>{heading}</h1>{note}
<table><tr><th>notebook</th><th>time</th><th>you will learn</th></tr>
{chr(10).join(rows)}
</table></body></html>
""", encoding="utf-8")
    return out


def run_all(build: Path, timeout: int = 600, numbers: list[str] | None = None, solutions: bool = False) -> list[str]:
    """Execute the notebooks (all, or those numbered) into build/NN_name.html and write build/index.html,
    printing progress; names of those that failed. With `solutions`, the solutions edition."""
    failures = []
    paths = [p for p in notebook_paths() if not numbers or p.name[:2] in numbers]
    for i, path in enumerate(paths, 1):
        start = time.perf_counter()
        try:
            out = to_html(execute(path, timeout, solutions=solutions), build / f"{path.stem}.html")
            print(f"[{i}/{len(paths)}] {path.name}: ok in {time.perf_counter() - start:.1f} s → {out}")
        except Exception as exc:  # report and go on: the facilitator wants every notebook's status
            failures.append(path.name)
            (build / f"{path.stem}.html").unlink(missing_ok=True)  # the index must not link an older run's page
            print(f"[{i}/{len(paths)}] {path.name}: FAILED after {time.perf_counter() - start:.1f} s: {reason(exc)}")
    print(f"index: {write_index(build, solutions)}")
    return failures


ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the colours of an IPython traceback


def reason(exc: Exception) -> str:
    """Why a notebook failed, in one line: the error's last line and, for a bare `assert`, the line that failed."""
    lines = ANSI.sub("", str(exc)).strip().splitlines() or [type(exc).__name__]
    failed = [m for m in map(re.compile(r"^-+>\s*(\d+)\s+(.*)").match, lines) if m]
    if lines[-1].rstrip().endswith(":") and failed:
        return f"{lines[-1].rstrip(' :')} in line {failed[-1][1]} of the cell: {failed[-1][2].strip()}"
    return lines[-1]


SCHEDULE = re.compile(r"<!-- schedule -->.*?<!-- /schedule -->", re.S)
BREAK = 10  # minutes of break after each notebook in the facilitator's schedule


def schedule() -> str:
    """The facilitator's schedule: each notebook's time (its own "Time:" line) and the clock with breaks."""
    rows, clock = ["| notebook | minutes | clock, with breaks | the notebook's time line |", "|---|---|---|---|"], 0
    for path in notebook_paths():
        about = intro(path)
        clock += about.minutes
        rows.append(f"| [{about.title}](notebooks/{path.name}) | {about.minutes} | {clock // 60}:{clock % 60:02d} | "
                    f"{about.time} |")
        clock += BREAK
    return "<!-- schedule -->\n" + "\n".join(rows) + "\n<!-- /schedule -->"


def update_schedule(guide: Path) -> bool:
    """Rewrite the schedule table of the facilitator's guide in place; True if it changed."""
    text = guide.read_text(encoding="utf-8")
    new = SCHEDULE.sub(lambda _: schedule(), text)
    if new != text:
        guide.write_text(new, encoding="utf-8")
    return new != text
