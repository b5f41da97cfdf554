-- Planner statistics. (No VACUUM here: the visibility map stays unset until autovacuum visits,
-- as after any bulk load; the notebook on index-only scans runs VACUUM itself and shows why.)
-- step: analyze
ANALYZE users, profiles, products, posts, comments, orders;

-- step: mark as the workbook's
-- The marker that lets `workbook seed` and `workbook reset` touch this database again later.
CREATE SCHEMA IF NOT EXISTS _workbook;
CREATE TABLE IF NOT EXISTS _workbook.meta (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO _workbook.meta (key, value) VALUES
    ('owner', 'database-integration-workbook'),
    ('scale', coalesce(nullif(current_setting('workbook.scale', true), ''), 'small')),
    ('seeded_at', now()::text)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;
