-- Foreign keys, after every table is loaded. Deliberately NOT indexed: posts.user_id,
-- comments.post_id, comments.user_id, orders.user_id, orders.product_id. PostgreSQL does not index
-- foreign keys by itself; notebooks 03 and 05 add these indexes and measure what changes.
-- (Two steps: `workbook seed` loads users, profiles, posts and comments in one session and products and
-- orders in another, in parallel; each step's keys stay within what one session loaded, or come last.)
-- step: foreign keys to users and posts
ALTER TABLE profiles ADD CONSTRAINT profiles_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id);
ALTER TABLE posts    ADD CONSTRAINT posts_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id);
ALTER TABLE comments ADD CONSTRAINT comments_post_id_fkey FOREIGN KEY (post_id) REFERENCES posts (id),
                     ADD CONSTRAINT comments_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id);

-- step: foreign keys of orders
ALTER TABLE orders   ADD CONSTRAINT orders_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id),
                     ADD CONSTRAINT orders_product_id_fkey FOREIGN KEY (product_id) REFERENCES products (id);
-- Identity columns continue after the generated ids.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'products', 'posts', 'comments', 'orders'] LOOP
        EXECUTE format('SELECT setval(pg_get_serial_sequence(%L, ''id''), coalesce(max(id), 0) + 1, false) FROM %I', t, t);
    END LOOP;
END $$;

-- step: mark as the workbook's
-- The marker that lets `workbook seed` and `workbook reset` touch this database again later.
-- (No VACUUM here: as after any bulk load, the visibility map stays unset until autovacuum
-- visits; the notebook on index-only scans runs VACUUM itself and shows why.)
CREATE SCHEMA IF NOT EXISTS _workbook;
CREATE TABLE IF NOT EXISTS _workbook.meta (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO _workbook.meta (key, value) VALUES
    ('owner', 'database-integration-workbook'),
    ('scale', coalesce(nullif(current_setting('workbook.scale', true), ''), 'small')),
    ('seeded_at', now()::text)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;
