"""The learner's code with its whole cell: a checker that runs a function elsewhere (an Alembic revision file, a
pytest conftest, a subprocess) needs its module-level imports and helpers too, not only the function's lines.

`inspect.getsource(f)` returns the `def` alone, so a cell that starts with `import time` gives NameError once the
function is written to a file of its own. IPython keeps every cell's text in `linecache` under the filename its
code objects carry, which is how `cell_source` finds the whole cell; `standalone_source` then keeps what the
function needs from it (imports, helpers, constants; not the `q1.check(…)` calls) and adds imports for the names it
takes from earlier cells, read from the function's `__globals__`:

    source = standalone_source(upgrade, provided={"op", "sa"})   # the revision file's header defines op and sa
    Path(folder, "ex1_answer.py").write_text(HEADER + source)
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import linecache
import symtable
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from . import WrongKind
from .pyparse import parse

DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
               ast.AnnAssign)
LITERALS = (int, float, complex, str, bytes, bool, type(None))


def cell_source(function: Any) -> str:
    """The whole source of the cell (or file) that defined `function`."""
    code = getattr(inspect.unwrap(function), "__code__", None)
    if code is None or isinstance(function, type):
        raise WrongKind(f"pass your function itself (without calling it), not a {type(function).__name__}")
    lines = linecache.getlines(code.co_filename)
    if not lines:
        raise WrongKind("the source of your function cannot be read: define it in a cell of the notebook")
    return "".join(lines)


def standalone_source(function: Any, provided: Iterable[str] = ()) -> str:
    """A module's source defining `function` as its cell did, runnable on its own (`provided`: names the host
    file defines itself). Names the function takes from earlier cells become imports, literals or their source."""
    source = cell_source(function)
    needed = set(free_names(_dedent(inspect.getsource(function)))) | {function.__name__}
    kept = _kept(source, needed)
    defined = set().union(*(_bound(s) for s in kept))
    missing = set().union(*(free_names(_segment(source, s)) for s in kept)) - defined - set(provided)
    header, helpers = _carried(missing, function.__globals__, set(provided) | defined)
    body = [_segment(source, s) for s in kept]
    return "\n".join(header) + ("\n\n" if header else "") + "\n\n".join(helpers + body) + "\n"


def free_names(source: str) -> list[str]:
    """Names `source` reads without binding them itself (globals of its functions included), builtins aside."""
    table = symtable.symtable(source, "<cell>", "exec")
    bound = {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()}
    found: list[str] = []

    def visit(scope: symtable.SymbolTable, top: bool) -> None:
        for symbol in scope.get_symbols():
            name = symbol.get_name()
            reads = symbol.is_referenced() and (symbol.is_global() or top)
            if reads and name not in bound and name not in found and not hasattr(builtins, name):
                found.append(name)
        for child in scope.get_children():
            visit(child, False)

    visit(table, True)
    return found


def _kept(source: str, needed: set[str]) -> list[ast.stmt]:
    """The cell's top-level definitions that `needed` reaches (transitively), in the cell's order."""
    statements = [s for s in parse(source).body if isinstance(s, DEFINITIONS) or _is_future(s)]
    kept: set[int] = set()
    todo, seen = sorted(needed), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for i, statement in enumerate(statements):
            if i not in kept and name in _bound(statement):
                kept.add(i)
                todo += free_names(_segment(source, statement))
    return [s for i, s in enumerate(statements) if i in kept or _is_future(s)]


def _is_future(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.ImportFrom) and statement.module == "__future__"


def _bound(statement: ast.stmt) -> set[str]:
    """The names a top-level statement binds."""
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {statement.name}
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in statement.names}
    targets = statement.targets if isinstance(statement, ast.Assign) else [getattr(statement, "target", None)]
    return {n.id for t in targets if t is not None for n in ast.walk(t) if isinstance(n, ast.Name)}


def _segment(source: str, statement: ast.stmt) -> str:
    """A statement's lines as written, its decorators included."""
    decorators = getattr(statement, "decorator_list", [])
    first = decorators[0].lineno if decorators else statement.lineno
    return "".join(source.splitlines(True)[first - 1:statement.end_lineno]).rstrip("\n")


def _carried(names: set[str], namespace: dict[str, Any], defined: set[str]) -> tuple[list[str], list[str]]:
    """(import or assignment lines, helper sources) that bring `names` from the function's namespace."""
    header: list[str] = []
    helpers: list[str] = []
    todo, seen = sorted(names), set(defined)
    while todo:
        name = todo.pop(0)
        if name in seen or name not in namespace:
            continue  # unknown here: the host file defines it, or running the code says NameError
        seen.add(name)
        value = namespace[name]
        line = _imported_in_history(name, namespace)
        line = line if line and _gives(line, name, value) else _import_line(name, value)
        if line is not None:
            header.append(line)
        elif _is_literal(value):
            header.append(f"{name} = {value!r}")
        elif inspect.isfunction(value) or inspect.isclass(value):  # a helper of an earlier cell: its source
            helper = inspect.getsource(value).rstrip("\n")
            helpers.append(helper if value.__name__ == name else f"{helper}\n\n\n{name} = {value.__name__}")
            todo += sorted(set(free_names(_dedent(helper))) - seen)
        else:
            raise WrongKind(f"your code uses {name!r}, a {type(value).__name__} made in another cell, which a file "
                            "of its own cannot rebuild: create it inside your function, or pass it in")
    return sorted(set(header), key=header.index), helpers


def _imported_in_history(name: str, namespace: dict[str, Any]) -> str | None:
    """The learner's own import of `name`, from the latest cell that imported it (IPython's input history `_ih`)."""
    for cell in reversed(namespace.get("_ih") or []):
        try:
            statements = parse(cell).body
        except SyntaxError:  # a cell of magics (%sql …): IPython's history keeps it transformed, but be safe
            continue
        for statement in reversed(statements):
            if isinstance(statement, (ast.Import, ast.ImportFrom)) and not _is_future(statement):
                alias = next((a for a in statement.names if (a.asname or a.name).split(".")[0] == name), None)
                if alias is not None:
                    return ast.unparse(type(statement)(**{**statement.__dict__, "names": [alias]}))
    return None


def _gives(line: str, name: str, value: Any) -> bool:
    """True if running the import `line` binds `name` to this very value (not rebound since)."""
    names: dict[str, Any] = {}
    try:
        exec(line, names)
    except Exception:  # an import that no longer works: the computed one is used instead
        return False
    return names.get(name) is value


def _import_line(name: str, value: Any) -> str | None:
    """`import …` or `from … import …` that gives `name` this value, if it is a module or an importable object."""
    if isinstance(value, ModuleType):
        module = value.__name__
        return f"import {module}" if module == name else f"import {module} as {name}"
    module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "." in qualname or "<" in qualname:
        return None
    try:
        if getattr(importlib.import_module(module), qualname) is not value:
            return None
    except (ImportError, AttributeError):
        return None
    return f"from {module} import {qualname}" + ("" if qualname == name else f" as {name}")


def _is_literal(value: Any) -> bool:
    """A value whose repr rebuilds it: numbers, strings, None, and containers of them."""
    if isinstance(value, LITERALS):
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(_is_literal(v) for v in value)
    if isinstance(value, dict):
        return all(_is_literal(k) and _is_literal(v) for k, v in value.items())
    return False


def _dedent(source: str) -> str:
    import textwrap

    return textwrap.dedent(source)
