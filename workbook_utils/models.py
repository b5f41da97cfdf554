"""SQLAlchemy 2 typed ORM models mirroring data/sql (tests/test_models.py proves they match the database)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Identity, Integer, Numeric, Text
from sqlalchemy.dialects.postgresql import BYTEA, JSONB, TIMESTAMP
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(AsyncAttrs, DeclarativeBase):
    """AsyncAttrs adds `obj.awaitable_attrs.<name>`: load a lazy attribute with `await` (notebook 02, §9)."""

    type_annotation_map = {int: BigInteger, str: Text, datetime: TIMESTAMP(timezone=True)}


def _id() -> Mapped[int]:
    return mapped_column(BigInteger, Identity(), primary_key=True)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = _id()
    email: Mapped[str] = mapped_column(unique=True)
    name: Mapped[str]
    region: Mapped[str]
    created_at: Mapped[datetime]
    bio: Mapped[str | None]
    avatar: Mapped[bytes | None] = mapped_column(BYTEA)  # 1 KB a row: the column to defer

    profile: Mapped[Profile | None] = relationship(back_populates="user")
    posts: Mapped[list[Post]] = relationship(back_populates="user")
    comments: Mapped[list[Comment]] = relationship(back_populates="user")
    orders: Mapped[list[Order]] = relationship(back_populates="user")

    def __repr__(self) -> str:
        return f"User(id={self.id}, name={self.name!r})"


class Profile(Base):
    __tablename__ = "profiles"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    display_name: Mapped[str]
    website: Mapped[str | None]
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")

    user: Mapped[User] = relationship(back_populates="profile")


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = _id()
    sku: Mapped[str] = mapped_column(unique=True)
    name: Mapped[str]
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    inventory: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, server_default="1")  # optimistic locking (notebook 04)


class Post(Base):
    __tablename__ = "posts"

    id: Mapped[int] = _id()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))  # no index on purpose (notebook 03)
    title: Mapped[str]
    body: Mapped[str]
    published: Mapped[bool] = mapped_column(server_default="false")
    created_at: Mapped[datetime]

    user: Mapped[User] = relationship(back_populates="posts")
    comments: Mapped[list[Comment]] = relationship(back_populates="post")


class Comment(Base):
    __tablename__ = "comments"

    id: Mapped[int] = _id()
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str]
    created_at: Mapped[datetime]

    post: Mapped[Post] = relationship(back_populates="comments")
    user: Mapped[User] = relationship(back_populates="comments")


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = _id()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    total: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    status: Mapped[str]
    created_at: Mapped[datetime]

    user: Mapped[User] = relationship(back_populates="orders")
    product: Mapped[Product] = relationship()
