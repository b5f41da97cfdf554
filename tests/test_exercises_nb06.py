"""Notebook 06's exercises: references and printed solutions pass; wrong answers and lesson-breaking "fixes" fail."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import literal_column, select, text
from sqlalchemy.dialects.postgresql import insert

from workbook_utils.exercises import CORRECT, INCORRECT, NOT_ATTEMPTED, nb06
from workbook_utils.models import Product


@pytest.fixture(scope="module")
def exercises():
    from workbook_utils import setup

    workbook = setup("06")
    yield nb06.load(workbook)
    workbook.close()


def _starter(source, name, tmp_path):
    """The starter function, loaded from a file (so its source can be read back, as from a notebook cell)."""
    import importlib.util

    path = tmp_path / f"{name}.py"
    path.write_text("from sqlalchemy import select, text\nfrom workbook_utils.models import Product\n" + source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def test_nb06_loading_the_exercises_first_leaves_wb_engine_alone():
    from workbook_utils import setup

    workbook = setup("06")   # a learner who restarts the kernel and runs the exercises' cell before any lesson cell
    nb06.load(workbook)
    assert "schema_translate_map" not in workbook.engine.get_execution_options()
    workbook.close()


def test_nb06_references_and_printed_solutions_pass(exercises, capsys):
    q1, q2, q3 = exercises
    assert q1.verdict(nb06.find_reference) == (CORRECT, None)
    assert q2.verdict(nb06.MONTHLY_REFERENCE) == (CORRECT, None)
    assert q3.verdict(nb06.sync_reference) == (CORRECT, None)
    namespace = {"q1": q1, "q2": q2, "q3": q3, "text": text, "pg_insert": insert, "Product": Product,
                 "literal_column": literal_column}
    for exercise in exercises:
        exec(exercise.solution_code, namespace)
        assert f"✅ {exercise.name}: correct." in capsys.readouterr().out


def test_nb06_starters_are_not_attempted(exercises, tmp_path):
    q1, q2, q3 = exercises
    assert q1.verdict(_starter(nb06.FIND_STARTER, "find_customer", tmp_path))[0] == NOT_ATTEMPTED
    assert q2.verdict(nb06.MONTHLY_STARTER.split('"""')[1])[0] == NOT_ATTEMPTED
    assert q3.verdict(_starter(nb06.SYNC_STARTER, "sync_prices", tmp_path))[0] == NOT_ATTEMPTED


def test_nb06_q1_rejects_fstrings_escaping_and_refusing_quotes(exercises):
    q1 = exercises[0]

    def fstring(conn, email):   # the starter, reworded
        return conn.execute(text("SELECT id, name FROM customers WHERE email = '" + email + "'")).all()

    def escaped(conn, email):   # safe here by luck of standard_conforming_strings, but the value is in the SQL
        return conn.execute(text(f"SELECT id, name FROM customers WHERE email = '{email.replace(chr(39), chr(39) * 2)}'")).all()

    def strips_quotes(conn, email):
        return nb06.find_reference(conn, email.replace("'", ""))

    def refuses_quotes(conn, email):
        return [] if "'" in email else nb06.find_reference(conn, email)

    def half_bound(conn, email):   # a bound parameter elsewhere does not make the f-string safe
        return conn.execute(text(f"SELECT id, name FROM customers WHERE id > :zero AND email = '{email}'"),
                            {"zero": 0}).all()

    def everyone(conn, email):
        return conn.execute(text("SELECT id, name FROM customers")).all()

    def blacklist(conn, email):   # bound, but refuses real addresses that contain SQL words
        return [] if any(w in email.upper() for w in ("OR", "UNION", ";", "--")) else nb06.find_reference(conn, email)

    def like(conn, email):   # bound, but a wildcard matches every address
        return conn.execute(text("SELECT id, name FROM customers WHERE email LIKE :e"), {"e": email}).all()

    def hex_pasted(conn, email):   # safe by encoding, but the value is still pasted into the SQL
        return conn.execute(text("SELECT id, name FROM customers "
                                 f"WHERE email = convert_from('\\x{email.encode().hex()}'::bytea, 'UTF8')")).all()

    def raw_cursor(conn, email):   # quote doubling through the driver, past SQLAlchemy: the value is in the SQL
        sql = f"SELECT id, name FROM customers WHERE email = '{email.replace(chr(39), chr(39) * 2)}'"
        return conn.connection.driver_connection.execute(sql).fetchall()

    def slow(conn, email):   # a lookup that never answers: stopped by the check's statement_timeout
        return conn.execute(text("SELECT id, name FROM customers, pg_sleep(60) WHERE email = :e"), {"e": email}).all()

    for wrong, why in [(fstring, "a quote in a real address"), (escaped, "bound parameter"),
                       (strips_quotes, "a quote in a real address"), (refuses_quotes, "a quote in a real address"),
                       (half_bound, "a quote in a real address"), (everyone, "finds user3"),
                       (blacklist, "SQL words"), (like, "wildcard"), (hex_pasted, "bound parameter"),
                       (raw_cursor, "bound parameter"), (slow, "finds user3")]:
        status, diff = q1.verdict(wrong)
        assert status == INCORRECT and why in diff, (wrong.__name__, diff)
    assert "pass your function" in q1.verdict("SELECT 1")[1]


def test_nb06_q1_sees_an_attack_that_changes_the_table(exercises):
    q1 = exercises[0]

    def quote_safe_but_stacked(conn, email):   # finds the real addresses, but runs what an attack appends
        if ";" in email:
            conn.exec_driver_sql(email.split(";", 1)[1].split("--")[0])
            return []
        return nb06.find_reference(conn, email)

    status, diff = q1.verdict(quote_safe_but_stacked)
    assert status == INCORRECT and "no attack changed the table" in diff, diff


def test_nb06_q2_rejects_no_window_wrong_columns_floats_and_subqueries(exercises):
    q2 = exercises[1]
    subquery = """
        WITH m AS (SELECT date_trunc('month', created_at) AS month, sum(total) AS revenue
                   FROM orders WHERE status <> 'cancelled' GROUP BY 1)
        SELECT month, revenue, (SELECT revenue FROM m p WHERE p.month < m.month ORDER BY p.month DESC LIMIT 1) AS previous
        FROM m ORDER BY 1"""
    with_cancelled = nb06.MONTHLY_REFERENCE.replace("WHERE status <> 'cancelled'", "")
    floats = nb06.MONTHLY_REFERENCE.replace("sum(total) AS revenue", "sum(total)::float AS revenue")
    lead = nb06.MONTHLY_REFERENCE.replace("lag(", "lead(")
    dummy_window = subquery.replace("LIMIT 1)", "LIMIT 1) + 0 * count(*) OVER ()")  # a window for show
    calendar = """
        WITH m AS (SELECT date_trunc('month', created_at) AS month, sum(total) AS revenue
                   FROM orders WHERE status <> 'cancelled' GROUP BY 1)
        SELECT m.month, m.revenue, p.revenue + 0 * count(*) OVER () AS previous
        FROM m LEFT JOIN m p ON p.month = m.month - interval '1 month' ORDER BY 1"""  # the calendar month before
    renamed = nb06.MONTHLY_REFERENCE.replace("AS previous", "AS prev")
    for wrong, why in [(subquery, "WindowAgg"), (with_cancelled, "rows"), (floats, "Decimal"),
                       (lead, "rows"), (nb06.MONTHLY_STARTER.split('"""')[1] + " -- changed", "item 0"),
                       (dummy_window, "SubPlan"), (calendar, "one month has none"), (renamed, "prev")]:
        status, diff = q2.verdict(wrong)
        assert status == INCORRECT and why in diff, (wrong, diff)
    assert "string of SQL" in q2.verdict(42)[1]



def test_nb06_q2_draws_its_made_up_orders_afresh_and_replays_them(exercises):
    q2 = exercises[1]
    assert q2.verdict(nb06.MONTHLY_REFERENCE, seed=7) == (CORRECT, None) and q2.last_draw.seed == 7
    status, diff = q2.verdict(nb06.MONTHLY_REFERENCE.replace("lag(", "lead("))
    assert status == INCORRECT and "made-up totals shifted by" in diff and "q2.check(answer, seed=" in diff, diff

def test_nb06_q3_rejects_loops_rewrites_delete_insert_and_do_nothing(exercises):
    q3 = exercises[2]

    def rewrites_unchanged(session, feed):   # one statement, but every existing row gets a new version
        upsert = insert(Product)
        upsert = upsert.on_conflict_do_update(index_elements=[Product.sku], set_={"price": upsert.excluded.price})
        inserted = session.scalars(upsert.returning(literal_column("xmax = 0")), feed).all()
        return {"inserted": sum(inserted), "updated": len(inserted) - sum(inserted)}

    def do_nothing(session, feed):
        inserted = session.scalars(insert(Product).on_conflict_do_nothing().returning(Product.id), feed).all()
        return {"inserted": len(inserted), "updated": 0}

    def delete_and_insert(session, feed):   # two statements; the rows lose their ids and inventory
        session.execute(Product.__table__.delete().where(Product.sku.in_([r["sku"] for r in feed])))
        session.execute(insert(Product), feed)
        return {"inserted": len(feed), "updated": 0}

    def overwrite_all(session, feed):   # one statement, the right counts, but name and inventory taken from the feed
        upsert = insert(Product)
        upsert = upsert.on_conflict_do_update(
            index_elements=[Product.sku], where=Product.price.is_distinct_from(upsert.excluded.price),
            set_={"price": upsert.excluded.price, "name": upsert.excluded.name, "inventory": upsert.excluded.inventory})
        inserted = session.scalars(upsert.returning(literal_column("xmax = 0")), feed).all()
        return {"inserted": sum(inserted), "updated": len(inserted) - sum(inserted)}

    def new_rows_changed(session, feed):   # new products stored with another inventory
        return nb06.sync_reference(session, [{**row, "inventory": 0} for row in feed])

    def select_then_upsert(session, feed):   # counts decided in Python from a SELECT first: two statements
        have = dict(session.execute(select(Product.sku, Product.price)).all())
        nb06.sync_reference(session, feed)
        return {"inserted": sum(r["sku"] not in have for r in feed),
                "updated": sum(r["sku"] in have and have[r["sku"]] != r["price"] for r in feed)}

    def raw_cursor_loop(session, feed):   # the per-row loop through the driver, which SQLAlchemy never sees
        cursor = session.connection().connection.driver_connection.cursor()
        written = []
        for row in feed:
            cursor.execute("INSERT INTO products (sku, name, price, inventory) VALUES (%(sku)s, %(name)s, %(price)s, "
                           "%(inventory)s) ON CONFLICT (sku) DO UPDATE SET price = excluded.price "
                           "WHERE products.price IS DISTINCT FROM excluded.price RETURNING xmax = 0", row)
            written += cursor.fetchall()
        return {"inserted": sum(r[0] for r in written), "updated": sum(not r[0] for r in written)}

    def flush_once(session, feed):   # the starter with one flush: still a SELECT per row
        counts = {"inserted": 0, "updated": 0}
        for row in feed:
            product = session.scalars(select(Product).where(Product.sku == row["sku"])).first()
            if product is None:
                session.add(Product(**row))
                counts["inserted"] += 1
            elif product.price != row["price"]:
                product.price = row["price"]
                counts["updated"] += 1
        return counts

    seen = []

    def replayed(session, feed):   # the counts of an earlier check, replayed: right only on that check's feed
        counts = nb06.sync_reference(session, feed)
        seen.append(counts)
        return seen[0]

    assert q3.verdict(replayed)[0] == CORRECT   # the first time, the counts are its own
    for wrong, why in [(rewrites_unchanged, "returns the counts"), (do_nothing, "returns the counts"),
                       (delete_and_insert, "returns the counts"), (flush_once, "statement"),
                       (replayed, "returns the counts"), (overwrite_all, "name and inventory"),
                       (new_rows_changed, "inserted as given"), (select_then_upsert, "statement"),
                       (raw_cursor_loop, "statement")]:
        status, diff = q3.verdict(wrong)
        assert status == INCORRECT and why in diff, (wrong.__name__, diff)


def test_nb06_q3_sees_rows_rewritten_even_with_the_right_counts(exercises):
    q3 = exercises[2]

    def touch_then_upsert(session, feed):   # one statement, right counts, but every existing row gets a new version
        upsert = insert(Product)
        upsert = upsert.on_conflict_do_update(index_elements=[Product.sku], set_={"price": upsert.excluded.price})
        was = "(SELECT p.price FROM products p WHERE p.id = products.id)"   # the statement's snapshot: the old price
        rows = session.execute(upsert.returning(literal_column("xmax = 0"),
                                                literal_column(f"{was} IS DISTINCT FROM products.price")), feed).all()
        return {"inserted": sum(r[0] for r in rows), "updated": sum(r[1] and not r[0] for r in rows)}

    status, diff = q3.verdict(touch_then_upsert)
    assert status == INCORRECT and "not rewritten" in diff, diff


def test_nb06_q1_accepts_other_bound_forms(exercises):
    q1 = exercises[0]

    def driver_sql(conn, email):   # the driver's own placeholder, through SQLAlchemy
        return conn.exec_driver_sql("SELECT id, name FROM customers WHERE email = %s", (email,)).all()

    def straight_through_the_driver(conn, email):   # bound by psycopg itself: SQLAlchemy never sees it
        return conn.connection.driver_connection.execute("SELECT id, name FROM customers WHERE email = %s",
                                                         (email,)).fetchall()

    def core(conn, email):
        from sqlalchemy import column, table

        customers = table("customers", column("id"), column("name"), column("email"))
        return conn.execute(select(customers.c.id, customers.c.name).where(customers.c.email == email)).all()

    for right in (driver_sql, straight_through_the_driver, core):
        verdict = q1.verdict(right)
        assert verdict == (CORRECT, None), (right.__name__, verdict)


def test_nb06_checks_stop_an_answer_that_sleeps(exercises, monkeypatch):
    import time

    q1, _, q3 = exercises
    monkeypatch.setitem(nb06.ANSWER_SECONDS, "q1", 2)
    monkeypatch.setitem(nb06.ANSWER_SECONDS, "q3", 2)

    def sleepy_find(conn, email):   # bound, but it sleeps in Python, where no statement_timeout reaches
        time.sleep(60)
        return nb06.find_reference(conn, email)

    def sleepy_sync(session, feed):
        time.sleep(60)
        return nb06.sync_reference(session, feed)

    for exercise, wrong in ((q1, sleepy_find), (q3, sleepy_sync)):
        started = time.monotonic()
        status, diff = exercise.verdict(wrong)
        assert status == INCORRECT and re.search(r"still running after [\d.]+ s", diff), diff
        assert time.monotonic() - started < 30
    assert q1.verdict(nb06.find_reference) == (CORRECT, None)   # the checks still work afterwards
    assert q3.verdict(nb06.sync_reference) == (CORRECT, None)


def test_nb06_q3_counts_reads_made_through_the_driver(exercises):
    q3 = exercises[2]

    def driver_read_first(session, feed):   # a SELECT past SQLAlchemy to count in Python, then one upsert
        have = dict(session.connection().connection.driver_connection.execute(
            "SELECT sku, price FROM products").fetchall())
        nb06.sync_reference(session, feed)
        return {"inserted": sum(r["sku"] not in have for r in feed),
                "updated": sum(r["sku"] in have and have[r["sku"]] != r["price"] for r in feed)}

    def core_upsert(session, feed):   # another correct form: Core on the table, counted from RETURNING
        table = Product.__table__
        upsert = insert(table)
        upsert = upsert.on_conflict_do_update(index_elements=["sku"], set_={"price": upsert.excluded.price},
                                              where=table.c.price != upsert.excluded.price)
        flags = session.execute(upsert.returning(literal_column("(xmax = 0)::int")), feed).scalars().all()
        return {"inserted": sum(flags), "updated": len(flags) - sum(flags)}

    status, diff = q3.verdict(driver_read_first)
    assert status == INCORRECT and "reads through the driver" in diff, diff
    assert q3.verdict(core_upsert) == (CORRECT, None)


def _pasted(value):
    """A value pasted into SQL text as a literal, its quotes doubled (what an f-string answer does at best)."""
    return "'" + str(value).replace("'", "''") + "'"


def _per_row_sql(feed):
    """Per row: an UPDATE of a changed price, then an INSERT of a missing sku (rv0609's answer), as SQL texts."""
    parts = []
    for row in feed:
        sku, price = _pasted(row["sku"]), row["price"]
        parts.append(f"UPDATE products SET price = {price} WHERE sku = {sku} AND price <> {price}")
        parts.append(f"INSERT INTO products (sku, name, price, inventory) SELECT {sku}, {_pasted(row['name'])}, {price}, "
                     f"{row['inventory']} WHERE NOT EXISTS (SELECT 1 FROM products WHERE sku = {sku})")
    return parts


def _counted(cursor, statements):
    """inserted/updated from the row counts of each result of a multi-statement string (UPDATE, INSERT, UPDATE, …)."""
    counts = {"inserted": 0, "updated": 0}
    for i in range(statements):
        counts["updated" if i % 2 == 0 else "inserted"] += cursor.rowcount
        cursor.nextset()
    return counts


def test_nb06_q3_counts_every_statement_of_a_string_that_holds_many(exercises):
    """rv0609 finding 1: 2N statements joined with "; " were one execute() and one statement_timestamp()."""
    q3 = exercises[2]

    def joined_through_the_driver(session, feed):
        parts = _per_row_sql(feed)
        cursor = session.connection().connection.driver_connection.cursor()
        cursor.execute("; ".join(parts))
        return _counted(cursor, len(parts))

    def joined_through_sqlalchemy(session, feed):   # the same string through SQLAlchemy (its counts are lost)
        session.connection().exec_driver_sql("; ".join(_per_row_sql(feed)))
        return {"inserted": 0, "updated": 0}

    budget = f"at most {nb06.BUDGET} statement for the whole feed (reads through the driver count too)"
    verdict = q3.evaluate(joined_through_the_driver)
    assert [claim for claim, holds in verdict.items() if not holds] == [   # the right counts and table: only these
        budget, nb06.PASTED], verdict
    status, diff = q3.verdict(joined_through_the_driver)
    assert status == INCORRECT and "statement" in diff, diff
    assert not q3.evaluate(joined_through_sqlalchemy)[budget]


def test_nb06_q3_rejects_values_pasted_into_the_sql(exercises):
    """rv0609 finding 2: one f-string upsert was one statement, so it passed; the feed now has a quote in a name."""
    q3 = exercises[2]
    upsert = ("INSERT INTO products (sku, name, price, inventory) VALUES {rows} ON CONFLICT (sku) DO UPDATE "
              "SET price = excluded.price WHERE products.price IS DISTINCT FROM excluded.price RETURNING xmax = 0")

    def fstring_upsert(session, feed):
        rows = ", ".join(f"('{r['sku']}', '{r['name']}', {r['price']}, {r['inventory']})" for r in feed)
        inserted = session.connection().exec_driver_sql(upsert.format(rows=rows)).scalars().all()
        return {"inserted": sum(inserted), "updated": len(inserted) - sum(inserted)}

    def escaped_upsert(session, feed):   # quotes doubled: it runs, but the values are still in the SQL text
        rows = ", ".join(f"({_pasted(r['sku'])}, {_pasted(r['name'])}, {r['price']}, {r['inventory']})" for r in feed)
        inserted = session.connection().exec_driver_sql(upsert.format(rows=rows)).scalars().all()
        return {"inserted": sum(inserted), "updated": len(inserted) - sum(inserted)}

    for wrong, why in ((fstring_upsert, "raised"), (escaped_upsert, "bound parameters")):
        status, diff = q3.verdict(wrong)
        assert status == INCORRECT and why in diff, (wrong.__name__, diff)


def test_nb06_q3_accepts_a_merge_of_one_bound_json_feed(exercises):
    """Another correct form: one MERGE (its INSERT and UPDATE each fire the statement trigger once), values bound."""
    import json

    q3 = exercises[2]

    def merge(session, feed):
        actions = session.scalars(text(
            "MERGE INTO products p USING jsonb_to_recordset(CAST(:feed AS jsonb)) "
            "AS f(sku text, name text, price numeric, inventory int) ON p.sku = f.sku "
            "WHEN MATCHED AND p.price IS DISTINCT FROM f.price THEN UPDATE SET price = f.price "
            "WHEN NOT MATCHED THEN INSERT (sku, name, price, inventory) VALUES (f.sku, f.name, f.price, f.inventory) "
            "RETURNING merge_action()"), {"feed": json.dumps(feed, default=str)}).all()
        return {"inserted": actions.count("INSERT"), "updated": actions.count("UPDATE")}

    assert q3.verdict(merge) == (CORRECT, None)


def test_nb06_statements_are_counted_by_the_parser():
    from workbook_utils.exercises import sqltree

    assert sqltree.count("INSERT INTO t VALUES (%(a)s, %s) RETURNING xmax = 0") == 1   # a driver's placeholders
    assert sqltree.count("UPDATE t SET a = 'x;y'; -- ; \nINSERT INTO t VALUES (1);") == 2
    assert sqltree.count("DO $$BEGIN UPDATE t SET a = 1; UPDATE t SET a = 2; END$$") == 1


def test_nb06_q1_finds_an_email_equal_to_the_one_given(exercises):
    """rv0609 findings 4-6: case folded, bound client-side, or run on nb06.customers: each says what failed."""
    from psycopg import ClientCursor

    q1 = exercises[0]

    def case_folded(conn, email):   # bound, but USER3@example.com is not the address user3@example.com
        return conn.execute(text("SELECT id, name FROM customers WHERE lower(email) = lower(:e)"), {"e": email}).all()

    def client_side(conn, email):   # psycopg pastes the value in, quoted, before sending: not a bound parameter
        with ClientCursor(conn.connection.driver_connection) as cursor:
            return cursor.execute("SELECT id, name FROM customers WHERE email = %s", (email,)).fetchall()

    def notebook_table(conn, email):   # §2's table, not the check's made-up one
        return conn.execute(text("SELECT id, name FROM nb06.customers WHERE email = :e"), {"e": email}).all()

    for wrong, why in ((case_folded, "USER3@example.com"), (client_side, "sent apart from the SQL"),
                       (notebook_table, "made-up `customers` table")):
        status, diff = q1.verdict(wrong)
        assert status == INCORRECT and why in diff, (wrong.__name__, diff)


_UPSERT_ROWS = ("INSERT INTO products (sku, name, price, inventory) VALUES {rows} ON CONFLICT (sku) DO UPDATE "
                "SET price = excluded.price WHERE products.price IS DISTINCT FROM excluded.price RETURNING xmax = 0")


def _half_bound(price, inventory):
    """A sync that binds sku and name but pastes the numbers with an f-string, in the forms `price`/`inventory` give."""
    def sync(session, feed):
        rows = ", ".join(f"(:s{i}, :n{i}, {price(r['price'])}, {inventory(r['inventory'])})" for i, r in enumerate(feed))
        params = {key: value for i, r in enumerate(feed) for key, value in ((f"s{i}", r["sku"]), (f"n{i}", r["name"]))}
        inserted = session.execute(text(_UPSERT_ROWS.format(rows=rows)), params).scalars().all()
        return {"inserted": sum(inserted), "updated": len(inserted) - sum(inserted)}
    return sync


def test_nb06_q3_rejects_numbers_pasted_into_the_sql(exercises):
    """Stop 30's review: sku and name bound, price and inventory pasted (12.5, 12.50, '12.50', 12): it passed 3/3."""
    q3 = exercises[2]
    claim = "the feed's values travel as bound parameters"
    for price, inventory in ((str, int), (lambda p: f"'{p}'", str), (lambda p: repr(float(p)), lambda n: f"'{n}'")):
        status, diff = q3.verdict(_half_bound(price, inventory))
        assert status == INCORRECT and claim in diff, diff

    def inventory_only(session, feed):   # the price bound too: only the inventory of each row is pasted
        rows = ", ".join(f"(:s{i}, :n{i}, :p{i}, {r['inventory']})" for i, r in enumerate(feed))
        params = {f"{k}{i}": r[key] for i, r in enumerate(feed) for k, key in (("s", "sku"), ("n", "name"), ("p", "price"))}
        inserted = session.execute(text(_UPSERT_ROWS.format(rows=rows)), params).scalars().all()
        return {"inserted": sum(inserted), "updated": len(inserted) - sum(inserted)}

    status, diff = q3.verdict(inventory_only)
    assert status == INCORRECT and claim in diff, diff

    def new_names_pasted(session, feed):   # rvb: the new products' names were the same in both feeds, 4 checks in 4
        def name(i, r):
            return "'" + r["name"].replace("'", "''") + "'" if r["sku"].startswith("NEW-") else f":n{i}"
        rows = ", ".join(f"(:s{i}, {name(i, r)}, :p{i}, :v{i})" for i, r in enumerate(feed))
        params = {f"{k}{i}": r[key] for i, r in enumerate(feed)
                  for k, key in (("s", "sku"), ("n", "name"), ("p", "price"), ("v", "inventory"))}
        inserted = session.execute(text(_UPSERT_ROWS.format(rows=rows)), params).scalars().all()
        return {"inserted": sum(inserted), "updated": len(inserted) - sum(inserted)}

    status, diff = q3.verdict(new_names_pasted)
    assert status == INCORRECT and claim in diff, diff


def test_nb06_q3_accepts_its_own_placeholders_built_per_row(exercises):
    """Every value bound, with placeholders of its own per row (:s0, :n0, …): the SQL text depends on the size only."""
    q3 = exercises[2]

    def per_row_placeholders(session, feed):
        rows = ", ".join(f"(:s{i}, :n{i}, :p{i}, :v{i})" for i in range(len(feed)))
        params = {f"{k}{i}": r[key] for i, r in enumerate(feed)
                  for k, key in (("s", "sku"), ("n", "name"), ("p", "price"), ("v", "inventory"))}
        inserted = session.execute(text(_UPSERT_ROWS.format(rows=rows)), params).scalars().all()
        return {"inserted": sum(inserted), "updated": len(inserted) - sum(inserted)}

    assert q3.verdict(per_row_placeholders) == (CORRECT, None)


def test_nb06_q2_rejects_a_query_with_no_outer_order_by(exercises):
    """Stop 30's review: the window's ORDER BY put the rows in order by chance; no outer ORDER BY promises none."""
    q2 = exercises[1]
    inner = ("SELECT date_trunc('month', created_at) AS month, sum(total) AS revenue FROM orders "
             "WHERE status <> 'cancelled' GROUP BY 1")
    unordered = f"SELECT month, revenue, lag(revenue) OVER (ORDER BY month) AS previous FROM ({inner}) t"
    status, diff = q2.verdict(unordered)
    assert status == INCORRECT and "ORDER BY" in diff, diff
    ordered_inside = f"SELECT * FROM ({nb06.MONTHLY_REFERENCE}) t"   # an ORDER BY inside a subquery promises nothing
    status, diff = q2.verdict(ordered_inside)
    assert status == INCORRECT and "ORDER BY" in diff, diff
    for wrong in (unordered + " ORDER BY NULL::int", unordered + " ORDER BY count(*) OVER ()",   # rvh (stop 31): 3 in 3
                  unordered + " ORDER BY month IS NULL", unordered + " ORDER BY t.month > '9999-01-01'",   # rvi: name the month
                  f"SELECT t.month, revenue, previous FROM ({nb06.MONTHLY_REFERENCE.replace('ORDER BY 1', '')}) t, "
                  "(SELECT 1 AS month) x ORDER BY x.month"):
        status, diff = q2.verdict(wrong)
        assert status == INCORRECT and "whose keys put the months in order" in diff, (wrong, diff)
    renamed = inner.replace("AS month", "AS mon").replace("AS revenue", "AS r")   # rvi: the month under another name
    for right in (f"SELECT mon AS month, r AS revenue, lag(r) OVER (ORDER BY mon) AS previous FROM ({renamed}) t "
                  "ORDER BY t.mon",
                  f"WITH m AS ({renamed}) SELECT mon AS month, r AS revenue, lag(r) OVER (ORDER BY mon) AS previous "
                  "FROM m ORDER BY mon NULLS FIRST, 2",
                  f"SELECT * FROM ({nb06.MONTHLY_REFERENCE.replace('ORDER BY 1', '')}) t ORDER BY 1",   # the column
                  unordered + " ORDER BY 1", unordered + " ORDER BY month", unordered + " ORDER BY t.month",
                  nb06.MONTHLY_REFERENCE.replace("ORDER BY 1", "ORDER BY date_trunc('month', created_at)"),
                  f"WITH m AS ({inner}) SELECT month, revenue, lag(revenue) OVER (ORDER BY month) AS previous "
                  "FROM m ORDER BY month"):
        assert q2.verdict(right) == (CORRECT, None), right


def test_nb06_q1_says_a_literal_execute_parameter_is_pasted(exercises):
    """Stop 30's review: bindparam(…, literal_execute=True) renders the value into the SQL text when the statement runs."""
    from sqlalchemy import String, bindparam

    q1 = exercises[0]

    def literal_execute(conn, email):   # untyped: SQLAlchemy cannot render it, so every lookup raises
        return conn.execute(text("SELECT id, name FROM customers WHERE email = :e")
                            .bindparams(bindparam("e", literal_execute=True)), {"e": email}).all()

    def literal_execute_typed(conn, email):   # typed: rendered, quoted, pasted
        return conn.execute(text("SELECT id, name FROM customers WHERE email = :e")
                            .bindparams(bindparam("e", type_=String, literal_execute=True)), {"e": email}).all()

    for wrong in (literal_execute, literal_execute_typed):
        status, diff = q1.verdict(wrong)
        assert status == INCORRECT and diff.startswith("“the email travels as a bound parameter"), (wrong.__name__, diff)


def test_nb06_load_by_name_and_questions_match_the_exercises():   # last: its close() ends the fixture's sessions too
    from workbook_utils import setup

    workbook = setup("06")
    try:
        q3 = nb06.load(workbook, "q3")
        assert q3.name == "q3" and q3.question == nb06.Q3.text
        assert [q.name for q in nb06.load(workbook, "q1", "q2")] == ["q1", "q2"]
        with pytest.raises(ValueError, match="q4"):
            nb06.load(workbook, "q4")
    finally:
        workbook.close()
