"""Find, execute and render the notebooks (used by `workbook run` and the notebook tests)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import config

if TYPE_CHECKING:
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
        line = nav_line(paths, i)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = NAV.sub(line, cell.source)
        if nbformat.writes(nb) + "\n" != path.read_text(encoding="utf-8"):
            nbformat.write(nb, path)
            changed.append(path)
    return changed


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


def lesson_cells(nb: nbformat.NotebookNode) -> list[int]:
    """Indexes of the code cells after the setup cell: what a learner runs again after finishing the notebook."""
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    return code[1:]


def execute(path: Path, timeout: int = 600, rerun: bool = False, cells: list[int] | None = None) -> nbformat.NotebookNode:
    """Run a notebook top to bottom on a fresh kernel (in its own folder); raises on the first failing cell.

    With `rerun`, the lesson cells then run once more in the same kernel, as a learner who goes back does.
    With `cells`, only the cells at these indexes run, in that order (e.g. the setup cell, then one part).
    """
    import tempfile

    import nbformat

    nb = nbformat.read(path, as_version=4)
    order = range(len(nb.cells)) if cells is None else cells
    with tempfile.TemporaryDirectory(prefix="workbook-kernel-") as kernel_dir:
        client = _client(nb, path, timeout, kernel_dir)
        with client.setup_kernel():
            for index in [*order, *(lesson_cells(nb) if rerun else [])]:
                client.execute_cell(nb.cells[index], index)
    return nb


def to_html(nb: nbformat.NotebookNode, out: Path) -> Path:
    """Write an executed notebook as a standalone HTML page (charts embedded, links to the other pages)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    body = re.sub(r'href="(\d\d_[a-z0-9_]+)\.ipynb"', r'href="\1.html"', body)  # links between the rendered pages
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body, encoding="utf-8")
    return out


def run_all(build: Path, timeout: int = 600) -> list[str]:
    """Execute every notebook into build/NN_name.html, printing progress; names of those that failed."""
    failures = []
    paths = notebook_paths()
    for i, path in enumerate(paths, 1):
        start = time.perf_counter()
        try:
            out = to_html(execute(path, timeout), build / f"{path.stem}.html")
            print(f"[{i}/{len(paths)}] {path.name}: ok in {time.perf_counter() - start:.1f} s → {out}")
        except Exception as exc:  # report and go on: the facilitator wants every notebook's status
            failures.append(path.name)
            print(f"[{i}/{len(paths)}] {path.name}: FAILED after {time.perf_counter() - start:.1f} s: "
                  f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}")
    return failures


if __name__ == "__main__":  # python -m workbook_utils.notebook_files: after adding or renaming a notebook
    for path in update_navigation():
        print(f"navigation updated: {path.name}")
