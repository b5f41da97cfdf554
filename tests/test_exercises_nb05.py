"""Notebook 05's exercises: references and printed solutions pass, known-wrong and letter-not-lesson answers fail."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from workbook_utils import db, urls
from workbook_utils.exercises import CORRECT, INCORRECT, NOT_ATTEMPTED, nb05
from workbook_utils.exercises.draws import Draw

from .elsewhere import alive, another_role

ANSWERS = '''
import time

import sqlalchemy as sa
from alembic import context, op

SKIP_LOCKED_BATCH = ("UPDATE users SET email_domain = split_part(email, '@', 2) WHERE id IN (SELECT id FROM users "
                     "WHERE email_domain IS NULL ORDER BY id LIMIT 5 FOR UPDATE SKIP LOCKED)")


def concurrently_in_transaction():
    op.create_index("ix_posts_user_id", "posts", ["user_id"], postgresql_concurrently=True)


def no_index():
    op.execute("SELECT 1")


def wrong_column():
    with op.get_context().autocommit_block():
        op.execute("SET lock_timeout = '10min'")   # §4, so that this answer fails for its own reason
        op.create_index("ix_posts_user_id", "posts", ["title"], postgresql_concurrently=True,
                        if_not_exists=True)


def batches_in_one_transaction():
    conn = op.get_bind()
    max_id = conn.execute(sa.text("SELECT max(id) FROM users")).scalar()
    for lo in range(0, max_id, 5):
        conn.execute(sa.text("UPDATE users SET email_domain = split_part(email, '@', 2) "
                             "WHERE id > :lo AND id <= :hi"), {"lo": lo, "hi": lo + 5})


def batched_wrong_value():
    conn = op.get_bind()
    max_id = conn.execute(sa.text("SELECT max(id) FROM users")).scalar()
    with op.get_context().autocommit_block():
        for lo in range(0, max_id, 5):
            conn.execute(sa.text("UPDATE users SET email_domain = email WHERE id > :lo AND id <= :hi"),
                         {"lo": lo, "hi": lo + 5})


def without_if_not_exists():
    with op.get_context().autocommit_block():
        op.execute("SET lock_timeout = '10min'")   # §4, so that this answer fails for its own reason
        op.create_index("ix_posts_user_id", "posts", ["user_id"], postgresql_concurrently=True)


def partial_index():
    with op.get_context().autocommit_block():
        op.execute("SET lock_timeout = '10min'")   # §4, so that this answer fails for its own reason
        op.create_index("ix_posts_user_id", "posts", ["user_id"], postgresql_concurrently=True,
                        if_not_exists=True, postgresql_where=sa.text("user_id < 10"))


def batches_in_savepoints():
    conn = op.get_bind()
    max_id = conn.execute(sa.text("SELECT max(id) FROM users")).scalar()
    for lo in range(0, max_id, 5):
        with conn.begin_nested():
            conn.execute(sa.text("UPDATE users SET email_domain = split_part(email, '@', 2) "
                                 "WHERE id > :lo AND id <= :hi"), {"lo": lo, "hi": lo + 5})


def batches_in_raw_savepoints():
    max_id = op.get_bind().execute(sa.text("SELECT max(id) FROM users")).scalar()
    for lo in range(0, max_id, 5):
        op.execute(f"SAVEPOINT s; UPDATE users SET email_domain = split_part(email, '@', 2) "
                   f"WHERE id > {lo} AND id <= {lo + 5}; RELEASE SAVEPOINT s")


def one_update_in_autocommit():
    with op.get_context().autocommit_block():
        op.execute("UPDATE users SET email_domain = split_part(email, '@', 2)")


def fk_validating_in_autocommit():
    with op.get_context().autocommit_block():
        op.create_foreign_key("posts_user_id_fkey", "posts", "users", ["user_id"], ["id"])


def fk_validating_then_commit():
    op.create_foreign_key("posts_user_id_fkey", "posts", "users", ["user_id"], ["id"])
    op.execute("COMMIT")
    op.execute("BEGIN")


def fk_steps_in_one_transaction():
    op.create_foreign_key("posts_user_id_fkey", "posts", "users", ["user_id"], ["id"], postgresql_not_valid=True)
    op.execute("ALTER TABLE posts VALIDATE CONSTRAINT posts_user_id_fkey")


def small_batches_then_one_update():
    conn = op.get_bind()
    with op.get_context().autocommit_block():
        lo, hi = conn.execute(sa.text("SELECT min(id) - 1, max(id) FROM users")).one()
        cut = lo + (hi - lo) * 4 // 5
        for start in range(lo, cut, 5):
            conn.execute(sa.text("UPDATE users SET email_domain = split_part(email, '@', 2) "
                                 "WHERE id > :lo AND id <= :hi"), {"lo": start, "hi": min(start + 5, cut)})
        conn.execute(sa.text("UPDATE users SET email_domain = split_part(email, '@', 2) WHERE id > :cut"), {"cut": cut})


def skip_locked_never_back():
    conn = op.get_bind()
    with op.get_context().autocommit_block():
        while conn.execute(sa.text(SKIP_LOCKED_BATCH)).rowcount:
            pass


def fk_quoted_in_one_transaction():
    op.execute('ALTER TABLE posts ADD CONSTRAINT "posts user fk" FOREIGN KEY (user_id) REFERENCES users NOT VALID')
    op.execute('ALTER TABLE posts VALIDATE CONSTRAINT "posts user fk"')


def fk_never_validated():
    op.create_foreign_key("posts_user_id_fkey", "posts", "users", ["user_id"], ["id"], postgresql_not_valid=True)


def fk_commit_on_the_bind():
    conn = op.get_bind()
    op.create_foreign_key("posts_user_id_fkey", "posts", "users", ["user_id"], ["id"], postgresql_not_valid=True)
    conn.commit()
    op.execute("ALTER TABLE posts VALIDATE CONSTRAINT posts_user_id_fkey")


def fk_both_in_one_execute():
    with op.get_context().autocommit_block():
        op.execute("ALTER TABLE posts ADD CONSTRAINT posts_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) "
                   "NOT VALID; ALTER TABLE posts VALIDATE CONSTRAINT posts_user_id_fkey")


def index_keeping_the_leftover():
    with op.get_context().autocommit_block():
        op.execute("SET lock_timeout = '10min'")   # §4, so that this answer fails for its own reason
        op.create_index("ix_posts_user_id", "posts", ["user_id"], postgresql_concurrently=True, if_not_exists=True)


def index_beside_the_leftover():
    with op.get_context().autocommit_block():
        op.execute("SET lock_timeout = '10min'")   # §4, so that this answer fails for its own reason
        op.create_index("ix_posts_by_user", "posts", ["user_id"], postgresql_concurrently=True, if_not_exists=True)


def index_dropping_one_name():   # the former reference: right only when the leftover had this name
    with op.get_context().autocommit_block():
        op.execute("SET lock_timeout = '10min'")
        op.drop_index("ix_posts_user_id", table_name="posts", postgresql_concurrently=True, if_exists=True)
        op.create_index("ix_posts_user_id", "posts", ["user_id"], postgresql_concurrently=True, if_not_exists=True)


def index_as_revision_0001():   # revision 0001's upgrade(), copied: it drops only its own name
    build_timeout = context.config.attributes.get("concurrent_lock_timeout", "0")
    with op.get_context().autocommit_block():
        op.execute(f"SET lock_timeout = '{build_timeout}'")
        if not context.is_offline_mode():
            invalid = op.get_bind().execute(sa.text(
                "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass('ix_posts_user_id')")).scalar()
            if invalid:
                op.drop_index("ix_posts_user_id", table_name="posts", postgresql_concurrently=True)
        op.create_index("ix_posts_user_id", "posts", ["user_id"], postgresql_concurrently=True, if_not_exists=True)
        op.execute("SET lock_timeout = '2s'")


def index_dropping_the_names_it_knows():   # rvx: every leftover name the check drew had "user" in it
    with op.get_context().autocommit_block():
        op.execute("SET lock_timeout = '10min'")
        if not context.is_offline_mode():
            for name in op.get_bind().execute(sa.text(
                    "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = "
                    "'posts'::regclass AND NOT i.indisvalid AND c.relname LIKE '%%user%%'")).scalars().all():
                op.drop_index(name, table_name="posts", postgresql_concurrently=True, if_exists=True)
        op.create_index("ix_posts_user_id", "posts", ["user_id"], postgresql_concurrently=True, if_not_exists=True)


def index_under_env_lock_timeout():   # rvx: the build ran under env.py's short lock_timeout, and passed
    with op.get_context().autocommit_block():
        if not context.is_offline_mode():
            for name in op.get_bind().execute(sa.text(
                    "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "WHERE i.indrelid = 'posts'::regclass AND NOT i.indisvalid")).scalars().all():
                op.drop_index(name, table_name="posts", postgresql_concurrently=True, if_exists=True)
        op.create_index("ix_posts_user_id", "posts", ["user_id"], postgresql_concurrently=True, if_not_exists=True)


def index_under_a_short_lock_timeout():   # rva: 250 ms to 2 s outlasted the check's request; not a long report
    with op.get_context().autocommit_block():
        op.execute("SET lock_timeout = '2s'")
        op.create_index("ix_posts_user_id", "posts", ["user_id"], postgresql_concurrently=True, if_not_exists=True)


def index_brin():   # rvx: valid, on posts(user_id), but no B-tree: it serves no lookup of one author's posts
    with op.get_context().autocommit_block():
        op.execute("SET lock_timeout = '10min'")
        op.create_index("ix_posts_user_id", "posts", ["user_id"], postgresql_concurrently=True, if_not_exists=True,
                        postgresql_using="brin")


def fk_adding_its_name_unless_there():   # rvx: a stale key under another name stays, beside a second key
    names = [] if context.is_offline_mode() else op.get_bind().execute(sa.text(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'posts'::regclass AND contype = 'f'")).scalars().all()
    if "posts_user_id_fkey" not in names:
        op.create_foreign_key("posts_user_id_fkey", "posts", "users", ["user_id"], ["id"], postgresql_not_valid=True)
    with op.get_context().autocommit_block():
        for name in names + ["posts_user_id_fkey"]:
            op.execute(f'ALTER TABLE posts VALIDATE CONSTRAINT "{name}"')


def fk_adding_one_name():   # the former reference: right only when no earlier run left a key
    op.create_foreign_key("posts_user_id_fkey", "posts", "users", ["user_id"], ["id"], postgresql_not_valid=True)
    with op.get_context().autocommit_block():
        op.execute("ALTER TABLE posts VALIDATE CONSTRAINT posts_user_id_fkey")


def index_then_table_lock():
    with op.get_context().autocommit_block():
        op.execute("SET lock_timeout = '10min'")   # §4, so that this answer fails for its own reason
        op.create_index("ix_posts_user_id", "posts", ["user_id"], postgresql_concurrently=True, if_not_exists=True)
    op.execute("LOCK TABLE posts IN SHARE MODE")
    op.execute("SELECT pg_sleep(0.5)")


INVALID = ("SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
           "WHERE i.indrelid = 'posts'::regclass AND NOT i.indisvalid")


def index_built_online_only():   # rvg (stop 31): a 1 s lock_timeout, the build out of the offline SQL's sight
    with op.get_context().autocommit_block():
        if not context.is_offline_mode():
            op.execute("SET lock_timeout = '1s'")
            for name in op.get_bind().execute(sa.text(INVALID)).scalars().all():
                op.drop_index(name, table_name="posts", postgresql_concurrently=True, if_exists=True)
            op.create_index("ix_posts_user_id", "posts", ["user_id"], postgresql_concurrently=True)


def key_share_every_row_first():   # rvg (stop 31): KEY SHARE let the request's row lock through at once
    conn = op.get_bind()
    with op.get_context().autocommit_block():
        ids = conn.execute(sa.text("SELECT id FROM users ORDER BY id FOR KEY SHARE")).scalars().all()
        for i in range(0, len(ids), 5):
            conn.execute(sa.text("UPDATE users SET email_domain = split_part(email, '@', 2) WHERE id = ANY(:ids)"),
                         {"ids": ids[i:i + 5]})


def every_row_locked_on_another_connection():   # rvi (stop 31): only the migration's own session was watched
    conn = op.get_bind()
    with op.get_context().autocommit_block():
        with conn.engine.connect() as other, other.begin():
            other.execute(sa.text("SET search_path TO nb05_exercises"))
            other.execute(sa.text("SELECT id FROM users FOR UPDATE SKIP LOCKED")).all()
            time.sleep(0.5)
        lo, hi = conn.execute(sa.text("SELECT min(id) - 1, max(id) FROM users")).one()
        for start in range(lo, hi, 5):
            conn.execute(sa.text("UPDATE users SET email_domain = split_part(email, '@', 2) "
                                 "WHERE id > :lo AND id <= :hi"), {"lo": start, "hi": start + 5})


def lock_every_row_first_then_batches():
    conn = op.get_bind()
    with op.get_context().autocommit_block():
        conn.exec_driver_sql("BEGIN")
        conn.execute(sa.text("SELECT id FROM users ORDER BY id FOR UPDATE SKIP LOCKED")).all()
        time.sleep(0.5)
        conn.exec_driver_sql("COMMIT")
        lo, hi = conn.execute(sa.text("SELECT min(id) - 1, max(id) FROM users")).one()
        for start in range(lo, hi, 5):
            conn.execute(sa.text("UPDATE users SET email_domain = split_part(email, '@', 2) "
                                 "WHERE id > :lo AND id <= :hi"), {"lo": start, "hi": start + 5})


def fill_all_but_held_then_batches_again():
    conn = op.get_bind()
    with op.get_context().autocommit_block():
        conn.execute(sa.text("UPDATE users SET email_domain = split_part(email, '@', 2) "
                             "WHERE id IN (SELECT id FROM users FOR UPDATE SKIP LOCKED)"))
        lo, hi = conn.execute(sa.text("SELECT min(id) - 1, max(id) FROM users")).one()
        for start in range(lo, hi, 5):
            conn.execute(sa.text("UPDATE users SET email_domain = split_part(email, '@', 2) "
                                 "WHERE id > :lo AND id <= :hi"), {"lo": start, "hi": start + 5})
'''


@pytest.fixture(scope="module")
def wb05():
    from workbook_utils import setup

    workbook = setup("05")
    yield workbook
    nb05.cleanup(workbook)
    workbook.close()


def _module(tmp_path, name: str, source: str):
    """Functions defined in a real file, so the checker can read their source as it does in a notebook cell."""
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_nb05_references_and_printed_solutions_pass(wb05, tmp_path):
    q1, q2, q3 = nb05.load(wb05)
    assert q1.verdict(nb05.index_fixed) == (CORRECT, None)
    assert q2.verdict(nb05.backfill_fixed) == (CORRECT, None)
    assert q3.verdict(nb05.fk_fixed) == (CORRECT, None)
    for i, exercise in enumerate((q1, q2, q3)):
        code = exercise.solution_code.rsplit("\n\n", 1)[0]
        solution = _module(tmp_path, f"solution_{i}", "import sqlalchemy as sa\nfrom alembic import op\n\n" + code)
        assert exercise.verdict(solution.upgrade) == (CORRECT, None), exercise.name


def test_nb05_starters_are_not_attempted_and_wrong_answers_fail(wb05, tmp_path):
    q1, q2, q3 = nb05.load(wb05)
    head = "import sqlalchemy as sa\nfrom alembic import op\n"
    for i, (exercise, starter) in enumerate(((q1, nb05.INDEX_STARTER), (q2, nb05.BACKFILL_STARTER),
                                              (q3, nb05.FK_STARTER))):
        assert exercise.verdict(_module(tmp_path, f"starter_{i}", head + starter).upgrade) == (NOT_ATTEMPTED, None)
    edited = _module(tmp_path, "edited", head + nb05.INDEX_STARTER.replace('["user_id"])', '["user_id"])  # x\n    pass'))
    wrong = _module(tmp_path, "answers", ANSWERS)
    starter_index = _module(tmp_path, "starter_index", head + nb05.INDEX_STARTER.replace("def upgrade", "def plain"))
    starter_fk = _module(tmp_path, "starter_fk", head + nb05.FK_STARTER.replace("def upgrade", "def validating"))
    starter_fill = _module(tmp_path, "starter_fill", head + nb05.BACKFILL_STARTER.replace("def upgrade", "def one"))
    cases = [(q1, starter_index.plain, "require-concurrent-index-creation"),     # the blocking build, renamed
             (q1, edited.upgrade, "require-concurrent-index-creation"),
             (q1, wrong.without_if_not_exists, "prefer-robust-stmts"),        # the rule that fired is named
             (q1, wrong.partial_index, "every row"),
             (q1, wrong.concurrently_in_transaction, "ActiveSqlTransaction"),
             (q1, wrong.no_index, "B-tree index"),
             (q1, wrong.index_then_table_lock, "waited"),                      # a lock taken after the build
             (q1, wrong.wrong_column, "B-tree index"),
             (q1, wrong.index_built_online_only, "offline SQL"),
             (q2, wrong.key_share_every_row_first, "tenth of the rows"),
             (q2, wrong.every_row_locked_on_another_connection, "tenth of the rows"),
             (q2, starter_fill.one, "tenth of the rows"),
             (q2, wrong.batches_in_one_transaction, "tenth of the rows"),     # batches that never commit
             (q2, wrong.batches_in_savepoints, "tenth of the rows"),          # savepoints: locks held to the end
             (q2, wrong.batches_in_raw_savepoints, "tenth of the rows"),
             (q2, wrong.one_update_in_autocommit, "tenth of the rows"),
             (q2, wrong.batched_wrong_value, "email's domain"),
             (q2, wrong.small_batches_then_one_update, "tenth of the rows"),  # beyond the held row
             (q2, wrong.skip_locked_never_back, "email's domain"),           # the held row left empty
             (q2, wrong.lock_every_row_first_then_batches, "tenth of the rows"),  # FOR UPDATE, seen while held
             (q2, wrong.fill_all_but_held_then_batches_again, "tenth of the rows"),  # rewritten rows: the log
             (q3, starter_fk.validating, "NOT VALID"),
             (q3, wrong.fk_validating_in_autocommit, "NOT VALID"),            # scans under SHARE ROW EXCLUSIVE
             (q3, wrong.fk_validating_then_commit, "NOT VALID"),              # commits only after the scan
             (q3, wrong.fk_steps_in_one_transaction, "committed"),            # the sheet's form (row 32)
             (q3, wrong.fk_quoted_in_one_transaction, "committed"),           # a quoted name, read right
             (q3, wrong.fk_never_validated, "validated"),
             (q3, wrong.fk_both_in_one_execute, "committed"),                  # one query string, one transaction
             (q3, wrong.fk_commit_on_the_bind, "context.is_offline_mode()")]  # offline, the bind is a mock
    for exercise, answer, why in cases:  # they fail on the first case, without a leftover
        status, diff = exercise.verdict(answer, seed=0 if exercise.name != "q2" else None)
        assert status == INCORRECT and why in diff, (exercise.name, answer.__name__, diff)


def _drawn(seed: int, name: str, options: tuple[str, ...]) -> str:
    """What the checker draws for `name` under `seed`: the size of posts first, as the checker does."""
    draw = Draw(seed)
    draw.integer("every nth post deleted", 2, 9)
    return draw.choice(name, options)


def test_nb05_q1_q3_each_check_runs_without_and_with_a_leftover_never_under_the_references_name(wb05, tmp_path):
    """The review's answers: with one draw per check, ignoring leftovers passed when it drew none (q1 seed 2, q3
    seed 1), and dropping ix_posts_user_id by name (revision 0001's form) passed when it drew none or that name
    (seeds 2 and 7). Now each check runs both cases, so they fail under those seeds too (the references pass both
    cases in test_nb05_references_and_printed_solutions_pass)."""
    q1, _, q3 = nb05.load(wb05)
    wrong = _module(tmp_path, "hard_coded", ANSWERS)
    for answer, seed in ((wrong.index_keeping_the_leftover, 2), (wrong.index_dropping_one_name, 2),
                         (wrong.index_as_revision_0001, 7)):
        status, diff = q1.verdict(answer, seed=seed)
        assert status == INCORRECT and "no invalid index" in diff, (answer.__name__, seed, diff)
    status, diff = q3.verdict(wrong.fk_adding_one_name, seed=1)   # ignores a stale key
    assert status == INCORRECT, diff
    for seed in (3, 4):   # fresh draws of the stale key's name: never the one this answer adds
        status, diff = q3.verdict(wrong.fk_adding_its_name_unless_there, seed=seed)
        assert status == INCORRECT and "by one key" in diff, diff
        status, diff = q1.verdict(wrong.index_dropping_the_names_it_knows, seed=seed)
        assert status == INCORRECT and "no invalid index" in diff, diff
    for answer in (wrong.index_under_env_lock_timeout, wrong.index_under_a_short_lock_timeout):
        status, diff = q1.verdict(answer, seed=5)   # a request outlasts env.py's setting; a report, 2 s
        assert status == INCORRECT and "lock_timeout of its own" in diff, (answer.__name__, diff)
    status, diff = q1.verdict(wrong.index_brin, seed=5)
    assert status == INCORRECT and "B-tree" in diff, diff
    assert {_drawn(seed, nb05.LEFTOVER, nb05.LEFTOVER_NAMES) for seed in range(200)} <= {
        name for name in nb05.LEFTOVER_NAMES if name not in ("none", "ix_posts_user_id")}
    assert not any("user" in name or "posts" in name for name in nb05.OTHER_LEFTOVER_NAMES)
    assert "posts_user_id_fkey" not in nb05.STALE_KEY_NAMES
    assert 2 <= q1.last_draw.values["every nth post deleted"] <= 9


def test_nb05_ends_an_earlier_answer_left_running_but_never_another_learners(wb05, scratch_db):
    """The copies are made afresh after ending this learner's exercise sessions; those of other databases and roles
    (other learners, in a room) carry the same application_name and are left alone."""
    name = f"{wb05.app_name}-exercise"
    libpq = urls.libpq_url("tiny")
    with another_role(libpq) as stranger, db.connect(scratch_db, application_name=name) as elsewhere, \
            db.connect(stranger, application_name=name) as theirs, db.connect(libpq, application_name=name) as ours:
        nb05._copies(wb05)
        assert alive(elsewhere) and alive(theirs) and not alive(ours)


OTHER_CORRECT = '''
import time

from sqlalchemy import text

DOMAIN = "split_part(email, '@', 2)"
NEXT_BATCH = (f"UPDATE users SET email_domain = {DOMAIN} WHERE id IN (SELECT id FROM users "
              "WHERE email_domain IS NULL ORDER BY id LIMIT 5 FOR UPDATE SKIP LOCKED)")


def index_in_own_words():
    with op.get_context().autocommit_block():
        op.execute(text("SET lock_timeout = '5min'"))
        if not context.is_offline_mode():
            for oid in op.get_bind().execute(text("SELECT indexrelid FROM pg_index WHERE NOT indisvalid "
                                                  "AND indrelid = 'posts'::regclass")).scalars():
                name = op.get_bind().execute(text("SELECT CAST(CAST(:oid AS regclass) AS text)"), {"oid": oid}).scalar()
                op.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {name}"))   # regclass's text: quoted as needed
        op.execute(text('CREATE INDEX CONCURRENTLY IF NOT EXISTS "ix posts by user" ON posts (user_id) INCLUDE (title)'))
        op.execute(text("SET lock_timeout = '2s'"))


def keyset(conn, after):
    """The next batch of ids after `after`, filled and committed: their ids (none when done)."""
    return conn.execute(text(f"UPDATE users SET email_domain = {DOMAIN} WHERE id IN (SELECT id FROM users "
                             "WHERE id > :after ORDER BY id LIMIT 5) RETURNING id"), {"after": after}).scalars().all()


def backfill_keyset_with_a_helper():
    conn = op.get_bind()
    with op.get_context().autocommit_block():
        done = keyset(conn, -1)
        while done:
            done = keyset(conn, max(done))


def backfill_skip_locked_then_back():
    conn = op.get_bind()
    with op.get_context().autocommit_block():
        while conn.execute(text("SELECT count(*) FROM users WHERE email_domain IS NULL")).scalar():
            if not conn.execute(text(NEXT_BATCH)).rowcount:
                time.sleep(0.05)  # only locked rows are left: come back for them


def stale_keys():
    """The keys posts → users an earlier run left (none offline: no catalog there)."""
    if context.is_offline_mode():
        return []
    return op.get_bind().execute(text("SELECT format('%I', conname) FROM pg_constraint WHERE contype = 'f' "
                                      "AND conrelid = 'posts'::regclass")).scalars().all()


def fk_quoted_name():
    keys = stale_keys()
    if not keys:
        op.execute('ALTER TABLE posts ADD CONSTRAINT "posts user fk" FOREIGN KEY (user_id) REFERENCES users NOT VALID')
    with op.get_context().autocommit_block():
        for key in keys or ['"posts user fk"']:
            op.execute(f"ALTER TABLE posts VALIDATE CONSTRAINT {key}")


def fk_both_in_autocommit():
    keys = stale_keys()
    with op.get_context().autocommit_block():
        if not keys:
            op.create_foreign_key("posts_user_id_fkey", "posts", "users", ["user_id"], ["id"], postgresql_not_valid=True)
        for key in keys or ["posts_user_id_fkey"]:
            op.execute(f"ALTER TABLE posts VALIDATE CONSTRAINT {key}")


def fk_in_do_blocks():   # rvg (stop 31): SQL only, idempotent, offline too; fk_steps could not read inside DO
    op.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_constraint WHERE contype = 'f' "
               "AND conrelid = 'posts'::regclass AND confrelid = 'users'::regclass) THEN "
               "ALTER TABLE posts ADD CONSTRAINT posts_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID; "
               "END IF; END $$")
    with op.get_context().autocommit_block():
        op.execute("DO $$ DECLARE r record; BEGIN FOR r IN SELECT conname FROM pg_constraint WHERE contype = 'f' "
                   "AND conrelid = 'posts'::regclass AND NOT convalidated LOOP "
                   "EXECUTE format('ALTER TABLE posts VALIDATE CONSTRAINT %I', r.conname); END LOOP; END $$")
'''


def test_nb05_other_correct_forms_pass_with_their_whole_cell(wb05, tmp_path):
    """Module-level imports and helpers (the whole cell), another SQL shape, a quoted name, SKIP LOCKED batches that
    come back for the held row: each under fresh draws of q2's users."""
    q1, q2, q3 = nb05.load(wb05)
    right = _module(tmp_path, "other_correct", "from alembic import context, op\n" + OTHER_CORRECT)
    for exercise, answer in ((q1, right.index_in_own_words), (q2, right.backfill_keyset_with_a_helper),
                             (q2, right.backfill_skip_locked_then_back), (q3, right.fk_quoted_name),
                             (q3, right.fk_both_in_autocommit), (q3, right.fk_in_do_blocks)):
        assert exercise.verdict(answer) == (CORRECT, None), (exercise.name, answer.__name__)


def test_nb05_q2_reference_passes_wherever_the_held_row_and_the_ids_fall(wb05):
    q2 = nb05.load(wb05)[1]
    for seed in (0, 1, 2):
        assert q2.verdict(nb05.backfill_fixed, seed=seed) == (CORRECT, None), q2.last_draw.describe()


def test_nb05_the_builds_lock_timeout_is_read_off_the_offline_sql():
    sql = ("SET lock_timeout = '2s';\nBEGIN;\nCOMMIT;\n{own}\nCREATE INDEX CONCURRENTLY ix ON posts (user_id);\n"
           "SET lock_timeout = '2s';")
    for own, seconds in (("SET lock_timeout = '10min';", 600), ("SET SESSION lock_timeout TO 600000;", 600),
                         ("SELECT set_config('lock_timeout', '5min', false);", 300), ("RESET lock_timeout;", 0),
                         ("SET lock_timeout = '10 min';", 600), ("SELECT set_config('lock_timeout', '1h', 'f');", 3600),
                         ("SET LOCAL lock_timeout = '10min';", 2), ("", 2), ("SET lock_timeout = '500ms';", 0.5)):
        assert nb05.build_lock_timeout(sql.format(own=own)) == seconds, own
    assert nb05.build_lock_timeout("SELECT 1") is None


def test_nb05_fk_steps_read_quoted_names_and_autocommit():
    begin, commit = "BEGIN;\n", "COMMIT;\n"
    add = 'ALTER TABLE posts ADD CONSTRAINT "posts user fk" FOREIGN KEY (user_id) REFERENCES users NOT VALID;\n'
    validate = 'ALTER TABLE posts VALIDATE CONSTRAINT "posts user fk";\n'
    assert all(nb05.fk_steps(begin + add + commit + validate + begin + commit).values())
    assert all(nb05.fk_steps(commit + add + validate + begin).values())          # both in autocommit
    assert list(nb05.fk_steps(begin + add + validate + commit).values()) == [True, False]
    assert list(nb05.fk_steps(begin + add.replace(" NOT VALID", "") + commit + validate).values()) == [False, True]


def test_checkers_parse_again_when_another_thread_trips_python_3_11s_ast_counter(monkeypatch):
    import ast

    from workbook_utils.exercises import pyparse

    real, calls = ast.parse, []

    def flaky(source, *args, **kwargs):   # what 3.11 raises when another thread builds AST objects meanwhile
        calls.append(source)
        if len(calls) == 1:
            raise SystemError("AST constructor recursion depth mismatch (before=3, after=40)")
        return real(source, *args, **kwargs)

    monkeypatch.setattr(ast, "parse", flaky)
    assert isinstance(pyparse.parse("import time\n"), ast.Module) and len(calls) == 2
    monkeypatch.setattr(ast, "parse", lambda *a, **k: (_ for _ in ()).throw(SystemError("something else")))
    with pytest.raises(SystemError, match="something else"):
        pyparse.parse("x = 1")
