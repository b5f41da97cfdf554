"""EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) for a statement, its nodes as a DataFrame, the tree drawn, two plans compared.

Taught in notebook 03: its first section writes `explain` out in a cell; later cells call this copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from sqlalchemy.engine import Connection, Engine

READS = ("Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan")  # the nodes that read a table's rows


def explain(bind: Engine | Connection, stmt: Any, params: dict | None = None, analyze: bool = True) -> dict:
    """The plan of `stmt` (a SQLAlchemy statement or SQL text) as PostgreSQL's JSON; DML is rolled back."""
    options = "ANALYZE, BUFFERS, FORMAT JSON" if analyze else "FORMAT JSON"
    if hasattr(bind, "begin_nested"):  # a Connection: analyse inside a savepoint, then undo it
        savepoint = bind.begin_nested()
        try:
            return _run(bind, stmt, params, options)
        finally:
            savepoint.rollback()
    with bind.connect() as conn:  # an Engine: the connection's transaction is rolled back on close
        return _run(conn, stmt, params, options)


def _run(conn: Connection, stmt: Any, params: dict | None, options: str) -> dict:
    """Compile for this connection's dialect (not the default one) and send EXPLAIN with the real parameters."""
    if isinstance(stmt, str):  # SQL as typed at a psql prompt: psycopg parses placeholders only when given params
        return conn.connection.driver_connection.execute(f"EXPLAIN ({options}) {stmt}", params).fetchone()[0][0]
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    return conn.exec_driver_sql(f"EXPLAIN ({options}) {compiled}", driver_params(compiled)).scalar_one()[0]


def driver_params(compiled: Any) -> dict[str, Any]:
    """A compiled statement's parameters as SQLAlchemy hands them to the driver: `compiled.params` holds the values
    before their types convert them (a dict for a JSON column, a TypeDecorator's input), so each goes through its
    type's bind processor, as an execution does."""
    dialect, params = compiled.dialect, {}
    for key, value in compiled.params.items():
        bind = compiled.binds.get(key)
        process = bind.type.dialect_impl(dialect).bind_processor(dialect) if bind is not None else None
        params[key] = process(value) if process is not None else value
    return params


def walk(node: dict, depth: int = 0, parent: int | None = None, counter: list[int] | None = None
         ) -> Iterator[tuple[int, int | None, int, dict]]:
    """(id, parent id, depth, node) for every node, depth first, children in plan order."""
    counter = counter if counter is not None else [0]
    me = counter[0]
    counter[0] += 1
    yield me, parent, depth, node
    for child in node.get("Plans", []):
        yield from walk(child, depth + 1, me, counter)


def _inclusive_ms(node: dict, processes: int = 1) -> dict[int, float]:
    """Time in each node and below it, over all its loops (ms), keyed by id(node).

    Under a Gather, loops count the workers too, which run at the same time: their sum is divided by the processes.
    """
    times = {id(node): float(node.get("Actual Total Time", 0.0)) * float(node.get("Actual Loops", 0) or 0) / processes}
    if node["Node Type"] in ("Gather", "Gather Merge"):
        processes = int(node.get("Workers Launched", 0)) + 1  # the leader takes part too
    for child in node.get("Plans", []):
        times.update(_inclusive_ms(child, processes))
    return times


def _refers_to(node: dict, init_plan: dict) -> bool:
    """True if `node` reads the value an InitPlan computes: a CTE Scan of its CTE, or an expression naming its result
    (`(InitPlan 1).col1` since PostgreSQL 17 prints it so, `$0` before: "InitPlan 1 (returns $0)")."""
    import re

    name = init_plan.get("Subplan Name", "")
    if name.startswith("CTE "):
        return node.get("Node Type") == "CTE Scan" and node.get("CTE Name") == name[4:]
    number = re.match(r"InitPlan (\d+)", name)
    words = [rf"\(InitPlan {number[1]}\)"] if number else []
    pattern = "|".join(words + [re.escape(param) + r"(?!\d)" for param in re.findall(r"\$\d+", name)])
    texts = [v for key, value in node.items() if key not in ("Plans", "Subplan Name")
             for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
    return bool(pattern) and any(re.search(pattern, text) for text in texts)


def exclusive(root: dict, inclusive: dict[int, float]) -> dict[int, float]:
    """Each node's own share of a measure EXPLAIN reports with its children's included (time, buffers), by id(node).

    A node's children are subtracted from it, except an InitPlan (a CTE, or a subquery run once): its work is counted
    by the node that first reads its value (a CTE Scan, a Filter naming it), so it is subtracted from that one.
    """
    own: dict[int, float] = {}
    init_plans: list[tuple[dict, dict]] = []
    for _, _, _, node in walk(root):
        children = node.get("Plans", [])
        own[id(node)] = inclusive[id(node)] - sum(inclusive[id(c)] for c in children
                                                  if c.get("Parent Relationship") != "InitPlan")
        init_plans += [(node, c) for c in children if c.get("Parent Relationship") == "InitPlan"]
    for parent, init_plan in init_plans:
        inside = {id(n) for *_, n in walk(init_plan)}
        left = inclusive[id(init_plan)]
        for *_, node in walk(parent):
            if left > 0 and id(node) not in inside and _refers_to(node, init_plan):
                taken = min(left, max(own[id(node)], 0.0))
                own[id(node)] -= taken
                left -= taken
        own[id(parent)] -= left  # read by no node we can name: the node it hangs from
    return {key: max(value, 0.0) for key, value in own.items()}


def _blocks(node: dict, kinds: tuple[str, ...] = ("Shared Hit Blocks", "Shared Read Blocks")) -> float:
    return float(sum(node.get(kind, 0) for kind in kinds))


TEMP = ("Temp Read Blocks", "Temp Written Blocks")  # a sort or hash that spilled to disk


def nodes(plan: dict) -> pd.DataFrame:
    """One row per plan node: type, relation, index, rows estimated and actual (all loops), and its own time and
    buffers (the node's alone: EXPLAIN's include its children's, see `exclusive`)."""
    import pandas as pd

    root = plan["Plan"]
    own_ms = exclusive(root, _inclusive_ms(root))
    own_buffers = exclusive(root, {id(n): _blocks(n) for *_, n in walk(root)})
    own_temp = exclusive(root, {id(n): _blocks(n, TEMP) for *_, n in walk(root)})
    rows = []
    for me, parent, depth, node in walk(root):
        loops = float(node.get("Actual Loops", 0) or 0)
        rows.append({
            "id": me, "parent": parent, "depth": depth, "node": name(node),
            "relation": node.get("Relation Name") or node.get("CTE Name"), "index": node.get("Index Name"),
            "role": node.get("Subplan Name") or node.get("Parent Relationship"),
            "estimated rows": float(node["Plan Rows"]) * max(loops, 1),
            "actual rows": float(node.get("Actual Rows", 0.0)) * loops, "loops": loops,
            "removed by filter": float(node.get("Rows Removed by Filter", 0)
                                       + node.get("Rows Removed by Index Recheck", 0)) * loops,
            "heap fetches": node.get("Heap Fetches"),
            "self ms": own_ms[id(node)],
            "buffers": int(round(own_buffers[id(node)])),
            "temp blocks": int(round(own_temp[id(node)])),
            "workers": node.get("Workers Launched"),
        })
    frame = pd.DataFrame(rows).set_index("id")
    frame["estimate / actual"] = frame["estimated rows"] / frame["actual rows"].clip(lower=1)
    return frame


AGGREGATES = {"Hashed": "HashAggregate", "Sorted": "GroupAggregate", "Mixed": "MixedAggregate", "Plain": "Aggregate"}


def name(node: dict) -> str:
    """A node's type as EXPLAIN's text prints it, from the JSON fields the text folds into it.

    "Parallel Seq Scan" (JSON keeps "Parallel Aware" apart); an Aggregate named by its "Strategy" (HashAggregate,
    GroupAggregate, MixedAggregate) and, in a parallel plan, its "Partial Mode" ("Partial HashAggregate").
    """
    kind = node["Node Type"]
    if kind == "Aggregate":
        kind = AGGREGATES.get(node.get("Strategy", "Plain"), kind)
        if node.get("Partial Mode", "Simple") != "Simple":
            kind = f"{node['Partial Mode']} {kind}"
    return ("Parallel " if node.get("Parallel Aware") else "") + kind


def node_types(plan: dict) -> list[str]:
    """Every node type in the plan, depth first."""
    return [name(node) for *_, node in walk(plan["Plan"])]


def indexes(plan: dict) -> set[str]:
    """The names of the indexes the plan reads."""
    return {node["Index Name"] for *_, node in walk(plan["Plan"]) if "Index Name" in node}


def scans(plan: dict, relation: str) -> pd.DataFrame:
    """The nodes that read `relation` (scans of the table or of its indexes)."""
    frame = nodes(plan)
    return frame[frame["relation"] == relation]


def summary(plan: dict) -> dict[str, Any]:
    """What a before/after comparison shows of one plan: node types, indexes, rows read, time, buffers."""
    frame = nodes(plan)
    scanned = frame[frame["node"].str.removeprefix("Parallel ").isin(READS)]
    top = plan["Plan"]
    return {"nodes": " → ".join(dict.fromkeys(frame["node"])), "indexes": ", ".join(sorted(indexes(plan))) or "—",
            "rows read by scans": int(scanned["actual rows"].sum() + scanned["removed by filter"].sum()),
            "rows returned": int(float(top.get("Actual Rows", 0)) * float(top.get("Actual Loops", 1))),
            "buffers": int(top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)),
            "execution ms": round(plan.get("Execution Time", float("nan")), 3)}


def compare(before: dict, after: dict, labels: tuple[str, str] = ("before", "after")) -> pd.DataFrame:
    """Two plans of one query side by side: one column each, one row per `summary` entry."""
    import pandas as pd

    return pd.DataFrame({labels[0]: summary(before), labels[1]: summary(after)})


def label(node: pd.Series) -> str:
    """A node as a plan reader names it: "Index Scan using posts_pkey on posts"."""
    import pandas as pd

    def given(key: str) -> bool:  # a DataFrame holds a missing value as None or NaN, and NaN is true
        return bool(pd.notna(node[key]) and node[key])

    text = node["node"] + (f" using {node['index']}" if given("index") else "")
    text += f" on {node['relation']}" if given("relation") else ""
    return text + (f"  [{node['role']}]" if given("role") and node["role"] not in ("Outer", "Inner", "Member") else "")


def draw(plan: dict, title: str, ax: Axes | None = None, color: str | None = None) -> Axes:
    """The plan tree, one row per node (indented by depth), each with a bar of its own time, rows and buffers."""
    import matplotlib.pyplot as plt

    from .charts import NEUTRAL

    frame = nodes(plan)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.6 + 0.38 * len(frame)))
    ys = range(len(frame))
    ax.barh(list(ys), frame["self ms"], color=color or NEUTRAL)
    ax.set_yticks(list(ys), ["   " * d + ("└ " if d else "") + label(row) for d, (_, row) in
                             zip(frame["depth"], frame.iterrows(), strict=True)], fontsize=8, family="monospace")
    for y, (_, row) in zip(ys, frame.iterrows(), strict=True):
        rows = f"{row['actual rows']:,.0f} row" + ("" if round(row["actual rows"]) == 1 else "s")
        ax.annotate(f" {row['self ms']:.2f} ms · {rows} · {row['buffers']:,} buf" + _temp(row),
                    (row["self ms"], y), va="center", fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("own time, ms (all loops); buf: own buffers (8 kB pages)")
    ax.set_title(f"{title} · {plan.get('Execution Time', 0):.2f} ms", loc="left", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return ax


def _temp(row: pd.Series) -> str:
    """ " · 120 temp" when the node spilled to disk (a sort or hash larger than work_mem), else nothing."""
    return f" · {row['temp blocks']:,} temp" if row.get("temp blocks", 0) else ""


def draw_pair(before: dict, after: dict, titles: tuple[str, str] = ("before", "after")) -> list[Axes]:
    """Two plans of one query, one above the other on one time scale: the failing one red, the fixed one green."""
    import matplotlib.pyplot as plt

    from .charts import FAILING, FIXED

    sizes = [len(nodes(before)), len(nodes(after))]
    fig, axes = plt.subplots(2, 1, sharex=True, figsize=(9, 1.2 + 0.38 * sum(sizes)),
                             gridspec_kw={"height_ratios": sizes})
    draw(before, titles[0], axes[0], FAILING)
    draw(after, titles[1], axes[1], FIXED)
    right = max(nodes(before)["self ms"].max(), nodes(after)["self ms"].max())
    axes[0].set_xlim(0, right * 1.6 or 1)  # room for the labels
    fig.tight_layout()
    return list(axes)
