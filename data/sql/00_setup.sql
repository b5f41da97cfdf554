-- The workbook's dataset: users, profiles (one-to-one), products, orders, posts, comments.
-- One set of files serves `workbook seed` (embedded server or DATABASE_URL) and the docker init
-- script (data/initdb.sh), which runs them in file order. Each table's file creates it, fills it
-- on the server (generate_series; setseed first, so its rows never depend on what ran before),
-- adds its primary key and analyzes it; 90_relations.sql adds the foreign keys last.
-- `workbook seed` loads in two sessions at once (workbook_utils/seed.py: LANES), each creating and
-- filling its tables in one transaction, so the bulk load skips the WAL (wal_level=minimal).
-- The scale comes from the setting workbook.scale (tiny | small | large; default small):
--   `workbook seed --scale tiny` sets it for its session; docker passes PGOPTIONS=-c workbook.scale=….
-- Skew is deliberate: power(random(), k) makes a few users own many posts and orders,
-- so plans and loaders behave as they do in production.
-- Timestamps are to_timestamp(1704067200 + random() * 60480000): 2024-01-01 plus up to 700 days,
-- in seconds (cheaper per row than interval arithmetic; the seed's speed is a budget).
-- step: drop old tables
SET client_min_messages = warning;
DROP TABLE IF EXISTS comments, orders, posts, profiles, products, users CASCADE;
-- The notebooks' scratch schemas (nb00, nb01, …) go too: setup("NN") recreates its own, and the
-- template copy taken after seeding holds the dataset only.
DO $$
DECLARE s text;
BEGIN
    FOR s IN SELECT nspname FROM pg_namespace WHERE nspname ~ '^nb[0-9]{2}$' LOOP
        EXECUTE format('DROP SCHEMA %I CASCADE', s);
    END LOOP;
END $$;

-- step: parameters
SET synchronous_commit = off;
DROP TABLE IF EXISTS pg_temp.params;
CREATE TEMP TABLE params AS
SELECT * FROM (VALUES
    ('tiny',     100,    20,     1000,    2500,    1000),
    ('small',  20000,  1000,   200000,  500000,  250000),
    ('large', 200000, 10000,  2000000, 5000000, 2500000)
) AS v (scale, users, products, posts, comments, orders)
WHERE scale = coalesce(nullif(current_setting('workbook.scale', true), ''), 'small');
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM params) THEN
        RAISE EXCEPTION 'unknown workbook.scale %: use tiny, small or large', current_setting('workbook.scale', true);
    END IF;
END $$;
