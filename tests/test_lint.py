"""The code passes the project's ruff rules (pyproject.toml [tool.ruff])."""

from __future__ import annotations

import subprocess
import sys

from workbook_utils.config import project_root


def test_ruff_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "workbook_utils", "tests", "benchmarks", "data/migrations"],
                            cwd=project_root(), capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout


def test_modules_depend_one_way():
    """No import circle among workbook_utils' modules, imports inside functions included."""
    import ast

    root = project_root() / "workbook_utils"
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        package = path.relative_to(root.parent).with_suffix("").parts[:-1]
        module = ".".join(package if path.name == "__init__.py" else (*package, path.stem))
        graph[module] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[: len(package) - node.level + 1]
                names = [node.module] if node.module else [a.name for a in node.names]
                graph[module] |= {".".join((*base, *n.split("."))) for n in names}

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), set()) & graph.keys() - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    circles = sorted({tuple(sorted((a, b))) for a in graph for b in reachable(a) if a != b and a in reachable(b)})
    assert not circles, f"modules that import each other: {circles}"
