-- step: profiles
CREATE TABLE profiles (
    user_id       bigint NOT NULL,
    display_name  text NOT NULL,
    website       text,
    settings      jsonb NOT NULL DEFAULT '{}'
);

INSERT INTO profiles (user_id, display_name, website, settings)
SELECT id,
       split_part(name, ' ', 1) || id,
       CASE WHEN id % 3 = 0 THEN 'https://example.com/~' || id END,
       jsonb_build_object('theme', CASE WHEN id % 2 = 0 THEN 'dark' ELSE 'light' END,
                          'newsletter', id % 5 = 0)
FROM users
WHERE id % 10 <> 0;   -- every tenth user has no profile: outer joins have something to show

ALTER TABLE profiles ADD CONSTRAINT profiles_pkey PRIMARY KEY (user_id);
ANALYZE profiles;
