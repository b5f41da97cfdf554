-- Deterministic data for a scale, generated on the server (generate_series + setseed).
-- The scale comes from the setting workbook.scale (tiny | small | large; default small):
--   `workbook seed --scale tiny` sets it for its session; docker passes PGOPTIONS=-c workbook.scale=….
-- Each step calls setseed first, so its rows do not depend on what ran before it.
-- Skew is deliberate: power(random(), k) makes a few users own many posts and orders,
-- so plans and loaders behave as they do in production.
-- step: parameters
SET synchronous_commit = off;
SET client_min_messages = warning;
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

-- step: users
DO $$ BEGIN PERFORM setseed(0.1); END $$;
INSERT INTO users (id, email, name, region, created_at, bio, avatar)
SELECT g,
       'user' || g || '@example.com',
       (ARRAY['Ada','Grace','Linus','Barbara','Edsger','Margaret','Ken','Frances'])[1 + g % 8] || ' ' ||
       (ARRAY['Lovelace','Hopper','Torvalds','Liskov','Dijkstra','Hamilton','Thompson','Allen'])[1 + (g / 8) % 8],
       (ARRAY['eu','us','apac','latam','africa'])[1 + floor(power(random(), 2) * 5)::int],
       timestamptz '2024-01-01 00:00+00' + random() * interval '700 days',
       repeat('Writes about databases and pools. ', 5 + floor(random() * 20)::int),
       decode(repeat('89504e470d0a1a0a', 256), 'hex')   -- 2 KB, the same for everyone
FROM params p, generate_series(1, p.users) AS g;

-- step: profiles
INSERT INTO profiles (user_id, display_name, website, settings)
SELECT id,
       split_part(name, ' ', 1) || id,
       CASE WHEN id % 3 = 0 THEN 'https://example.com/~' || id END,
       jsonb_build_object('theme', CASE WHEN id % 2 = 0 THEN 'dark' ELSE 'light' END,
                          'newsletter', id % 5 = 0)
FROM users
WHERE id % 10 <> 0;   -- every tenth user has no profile: outer joins have something to show

-- step: products
DO $$ BEGIN PERFORM setseed(0.2); END $$;
INSERT INTO products (id, sku, name, price, inventory, version)
SELECT g, 'SKU-' || lpad(g::text, 6, '0'), 'Product ' || g,
       round((1 + random() * 199)::numeric, 2), floor(random() * 500)::int, 1
FROM params p, generate_series(1, p.products) AS g;

-- step: posts
DO $$ BEGIN PERFORM setseed(0.3); END $$;
INSERT INTO posts (id, user_id, title, body, published, created_at)
SELECT g,
       1 + floor(p.users * power(random(), 4))::bigint,
       'Post ' || g || ': notes on ' ||
       (ARRAY['indexes','pools','locks','migrations','plans','transactions'])[1 + g % 6],
       repeat('Lorem ipsum dolor sit amet. ', 3 + floor(random() * 10)::int),
       random() < 0.7,
       timestamptz '2024-01-01 00:00+00' + random() * interval '700 days'
FROM params p, generate_series(1, p.posts) AS g;

-- step: comments
DO $$ BEGIN PERFORM setseed(0.4); END $$;
INSERT INTO comments (id, post_id, user_id, body, created_at)
SELECT g,
       1 + floor(p.posts * power(random(), 3))::bigint,
       1 + floor(p.users * random())::bigint,
       'Comment ' || g || ': ' || repeat('good point. ', 1 + floor(random() * 5)::int),
       timestamptz '2024-01-01 00:00+00' + random() * interval '700 days'
FROM params p, generate_series(1, p.comments) AS g;

-- step: orders
DO $$ BEGIN PERFORM setseed(0.5); END $$;
INSERT INTO orders (id, user_id, product_id, quantity, total, status, created_at)
SELECT o.id, o.user_id, o.product_id, o.quantity, o.quantity * pr.price, o.status, o.created_at
FROM (
    SELECT g AS id,
           1 + floor(p.users * power(random(), 2))::bigint AS user_id,
           1 + floor(p.products * power(random(), 2))::bigint AS product_id,
           1 + floor(random() * 5)::int AS quantity,
           (ARRAY['pending','paid','shipped','delivered','cancelled'])[1 + floor(random() * 5)::int] AS status,
           timestamptz '2024-01-01 00:00+00' + random() * interval '700 days' AS created_at
    FROM params p, generate_series(1, p.orders) AS g
) AS o
JOIN products AS pr ON pr.id = o.product_id;
