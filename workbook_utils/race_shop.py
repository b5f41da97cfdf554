"""The scratch shop notebook 04 races on: a copy of products, plus orders, tags, doctors and jobs in schema nb04.

Both Parts of the notebook stand it up with `stand_up(wb)` (Part 2 after a kernel restart), so the tables, the
engine and `reset()` are one definition:

    shop = race_shop.stand_up(wb)
    shop.reset()          # products 1 and 2 back to 10 in stock; no orders, tags or jobs; two doctors on call
    shop.stock(1)         # product 1's committed inventory
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from .workbook import Workbook

TABLES = """\
CREATE TABLE nb04.orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                          product_id bigint NOT NULL REFERENCES nb04.products (id), quantity int NOT NULL);
CREATE TABLE nb04.tags (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL UNIQUE);
CREATE TABLE nb04.doctors (name text PRIMARY KEY, on_call boolean NOT NULL);
CREATE TABLE nb04.jobs (id int PRIMARY KEY, status text NOT NULL DEFAULT 'queued', worker int)"""
OPTIONS = "-c search_path=nb04 -c lock_timeout=5s"  # products means the copy; no wait is unbounded


@dataclass
class Shop:
    """The shop's engine (search_path nb04, lock_timeout 5 s), `reset(units)` and `stock(product_id)`."""

    engine: Engine
    reset: Callable[..., None]
    stock: Callable[..., int]


def stand_up(wb: Workbook) -> Shop:
    """Copy products into nb04, (re)create the other tables, and return the shop, reset to 10 units."""
    from sqlalchemy import text

    with wb.engine.begin() as conn:  # orders references products: drop it before products is copied again
        conn.execute(text("DROP TABLE IF EXISTS nb04.orders, nb04.tags, nb04.doctors, nb04.jobs"))
    wb.scratch_copy(["products"])
    with wb.engine.begin() as conn:
        conn.execute(text(TABLES))
    engine = wb.make_engine(connect_args={"options": OPTIONS})

    def reset(units: int = 10) -> None:
        """Products 1 and 2 back to `units` in stock (version 1); no orders, tags or jobs; two doctors on call."""
        with engine.begin() as conn:
            conn.execute(text("UPDATE products SET inventory = :n, version = 1 WHERE id IN (1, 2)"), {"n": units})
            conn.execute(text("DELETE FROM products WHERE sku = 'phantom'"))
            conn.execute(text("TRUNCATE orders, tags, doctors, jobs"))
            conn.execute(text("INSERT INTO doctors VALUES ('alice', true), ('bob', true)"))

    def stock(product_id: int = 1) -> int:
        """Product `product_id`'s inventory, as committed."""
        with engine.connect() as conn:
            return conn.execute(text("SELECT inventory FROM products WHERE id = :id"), {"id": product_id}).scalar_one()

    reset()
    return Shop(engine, reset, stock)
