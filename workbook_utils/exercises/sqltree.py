"""A learner's SQL read with PostgreSQL's own parser (pglast: libpg_query in a wheel), never with regexes.

A regex misreads what the server reads fine: a quoted identifier (`CREATE INDEX "q1--by_author" …`, a
constraint named `"posts user fk"`), a `;` inside a string, a comment before the first keyword, `NOT VALID`
inside a string literal. The parser returns the statement as the server will see it:

    one("CREATE INDEX CONCURRENTLY \"q1--by_author\" ON posts (user_id)")   # the parse tree of one statement
    index("CREATE INDEX CONCURRENTLY \"q1--by_author\" ON posts (user_id)")
    # Index(name='q1--by_author', schema=None, table='posts', columns=('user_id',), concurrently=True, …)
    table_changes('ALTER TABLE posts ADD CONSTRAINT "posts user fk" FOREIGN KEY (user_id) REFERENCES users NOT VALID')
    # [Change(action='AddConstraint', table='posts', name='posts user fk', kind='foreign', not_valid=True)]
    order_by("SELECT … ORDER BY count(*) DESC, region")   # [SortKey('count(*)', True, None), SortKey('region', …)]

Text that does not parse, or holds another number of statements than asked, raises `WrongKind` with the parser's
own message, which the checker shows as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import WrongKind

WRITES = ("InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt")


class UnreadableSQL(WrongKind):
    """The text is not one SQL statement the server would accept (the parser's message says why)."""


def parse(sql: Any) -> list[Any]:
    """The parse tree of each statement in `sql` (pglast nodes)."""
    from pglast import parse_sql
    from pglast.parser import ParseError

    if not isinstance(sql, str):
        raise UnreadableSQL(f"pass the SQL as a string, not a {type(sql).__name__}")
    try:
        return [raw.stmt for raw in parse_sql(sql)]
    except ParseError as error:
        raise UnreadableSQL(f"PostgreSQL cannot read your SQL: {error}") from None


def one(sql: Any) -> Any:
    """The parse tree of the one statement `sql` holds."""
    statements = parse(sql)
    if len(statements) != 1:
        raise UnreadableSQL(f"give one SQL statement; your text holds {len(statements)}")
    return statements[0]


def split(sql: Any) -> list[str]:
    """The statements of `sql`, as text (a `;` inside a string or a comment does not split)."""
    from pglast import split as pg_split

    parse(sql)  # the parser's message for text that does not parse
    return [s.strip() for s in pg_split(sql)]


def count(sql: str) -> int:
    """How many statements a text sent to the server holds, read by PostgreSQL's own scanner: a driver's placeholders
    (`%s`, `%(name)s`) are fine, and a `;` inside a string, a `$$` body or a comment does not count. Text the scanner
    cannot read (an unterminated string) counts as one: the server refuses it as one."""
    from pglast import split as pg_split
    from pglast.parser import ParseError

    try:
        return len(pg_split(sql, with_parser=False))
    except ParseError:
        return 1


def walk(node: Any) -> Iterator[Any]:
    """Every node of a parse tree, `node` first."""
    from pglast import ast

    todo = [node]
    while todo:
        item = todo.pop()
        if isinstance(item, tuple):
            todo.extend(reversed(item))
        elif isinstance(item, ast.Node):
            yield item
            todo.extend(reversed([getattr(item, member) for member in item]))


def kind(node: Any) -> str:
    """The statement's node name: "SelectStmt", "IndexStmt", "AlterTableStmt", …"""
    return type(node).__name__


def writes(node: Any) -> bool:
    """True if the statement changes data anywhere: INSERT/UPDATE/DELETE/MERGE (in a WITH too), SELECT INTO."""
    return any(kind(n) in WRITES or (kind(n) == "SelectStmt" and n.intoClause is not None) for n in walk(node))


def is_query(sql: Any) -> bool:
    """True if `sql` is one SELECT (WITH and set operations included) that writes nothing."""
    node = one(sql)
    return kind(node) == "SelectStmt" and not writes(node)


def tables(sql: Any) -> set[str]:
    """The tables a statement reads or writes, as written ("posts", "nb03.posts"); names of WITH queries aside."""
    from pglast.visitors import referenced_relations

    parse(sql)
    return set(referenced_relations(sql))


def deparse(node: Any) -> str:
    """A node as SQL text, in PostgreSQL's own spelling (quotes only where needed)."""
    from pglast.stream import RawStream

    return RawStream()(node)


@dataclass(frozen=True)
class Index:
    """What a CREATE INDEX statement asks for."""

    name: str | None
    schema: str | None
    table: str
    columns: tuple[str, ...]  # column names, or expressions as SQL text
    concurrently: bool
    unique: bool
    where: str | None  # a partial index's predicate, as SQL text
    include: tuple[str, ...]
    method: str
    if_not_exists: bool


def index(sql: Any) -> Index:
    """The one CREATE INDEX statement in `sql`, read."""
    node = one(sql)
    if kind(node) != "IndexStmt":
        raise UnreadableSQL(f"give a CREATE INDEX statement, not {_spoken(node)}")

    def element(e: Any) -> str:
        return e.name if e.name is not None else deparse(e.expr)

    return Index(name=node.idxname, schema=node.relation.schemaname, table=node.relation.relname,
                 columns=tuple(element(e) for e in node.indexParams or ()), concurrently=bool(node.concurrent),
                 unique=bool(node.unique), where=deparse(node.whereClause) if node.whereClause is not None else None,
                 include=tuple(element(e) for e in node.indexIncludingParams or ()), method=node.accessMethod,
                 if_not_exists=bool(node.if_not_exists))


@dataclass(frozen=True)
class Change:
    """One action of an ALTER TABLE: e.g. AddConstraint of a foreign key, NOT VALID; ValidateConstraint; SetNotNull."""

    action: str  # PostgreSQL's name without its AT_ prefix: AddConstraint, ValidateConstraint, SetNotNull, AddColumn …
    table: str
    name: str | None  # the constraint's or the column's name
    kind: str | None = None  # of an added constraint: foreign, check, unique, primary, notnull …
    not_valid: bool = False


def table_changes(sql: Any) -> list[Change]:
    """Every action of every ALTER TABLE statement in `sql`, in order."""
    changes = []
    for node in parse(sql):
        if kind(node) != "AlterTableStmt":
            continue
        for cmd in node.cmds:
            constraint = cmd.def_ if kind(cmd.def_) == "Constraint" else None
            column = cmd.def_ if kind(cmd.def_) == "ColumnDef" else None
            name = cmd.name or (constraint.conname if constraint else None) or (column.colname if column else None)
            changes.append(Change(action=cmd.subtype.name.removeprefix("AT_"), table=node.relation.relname, name=name,
                                  kind=constraint.contype.name.removeprefix("CONSTR_").lower() if constraint else None,
                                  not_valid=bool(constraint and constraint.skip_validation)))
    return changes


@dataclass(frozen=True)
class SortKey:
    """One key of an ORDER BY: its expression as SQL text, its direction, where NULLs go (None: the default)."""

    expression: str
    descending: bool
    nulls: str | None


def order_by(sql: Any) -> list[SortKey]:
    """The ORDER BY keys of the one SELECT in `sql` (its outermost ORDER BY; [] if it has none)."""
    from pglast.enums import SortByDir, SortByNulls

    node = one(sql)
    if kind(node) != "SelectStmt":
        raise UnreadableSQL(f"give a SELECT, not {_spoken(node)}")
    nulls = {SortByNulls.SORTBY_NULLS_FIRST: "first", SortByNulls.SORTBY_NULLS_LAST: "last"}
    return [SortKey(deparse(key.node), key.sortby_dir == SortByDir.SORTBY_DESC, nulls.get(key.sortby_nulls))
            for key in node.sortClause or ()]


def _spoken(node: Any) -> str:
    """A statement's kind in words: "a SelectStmt" reads as "a SELECT statement"."""
    words = {"SelectStmt": "a SELECT", "IndexStmt": "a CREATE INDEX", "AlterTableStmt": "an ALTER TABLE",
             "InsertStmt": "an INSERT", "UpdateStmt": "an UPDATE", "DeleteStmt": "a DELETE"}
    return f"{words.get(kind(node), 'a ' + kind(node).removesuffix('Stmt'))} statement"
