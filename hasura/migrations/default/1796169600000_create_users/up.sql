-- The users table of the Hasura + Clerk tutorials. `id` is the Clerk user id (`sub`, "user_..."): text,
-- not uuid, because Clerk ids are not UUIDs. `name` may stay empty (a Clerk user need not have one);
-- `last_seen` is what the `user` role may update on its own row.
CREATE TABLE public.users (
    id text NOT NULL,
    name text,
    last_seen timestamp with time zone DEFAULT now(),
    CONSTRAINT users_pkey PRIMARY KEY (id)
);
