-- Keys after the load. Deliberately NOT indexed: posts.user_id, comments.post_id,
-- comments.user_id, orders.user_id, orders.product_id. PostgreSQL does not index foreign keys
-- by itself; notebooks 03 and 05 add these indexes and measure what changes.
-- step: keys
ALTER TABLE users    ADD CONSTRAINT users_pkey PRIMARY KEY (id),
                     ADD CONSTRAINT users_email_key UNIQUE (email);
ALTER TABLE products ADD CONSTRAINT products_pkey PRIMARY KEY (id),
                     ADD CONSTRAINT products_sku_key UNIQUE (sku);
ALTER TABLE profiles ADD CONSTRAINT profiles_pkey PRIMARY KEY (user_id);
ALTER TABLE posts    ADD CONSTRAINT posts_pkey PRIMARY KEY (id);
ALTER TABLE comments ADD CONSTRAINT comments_pkey PRIMARY KEY (id);
ALTER TABLE orders   ADD CONSTRAINT orders_pkey PRIMARY KEY (id);

-- step: foreign keys
ALTER TABLE profiles ADD CONSTRAINT profiles_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id);
ALTER TABLE posts    ADD CONSTRAINT posts_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id);
ALTER TABLE comments ADD CONSTRAINT comments_post_id_fkey FOREIGN KEY (post_id) REFERENCES posts (id),
                     ADD CONSTRAINT comments_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id);
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
