-- earn_simple: one earn = insert the entry row (idempotent on id) and upsert the member's
-- balance, in one statement (one round trip, one transaction, one WAL flush at commit).
-- No postings, no `issued` row: no row is shared between clients.
--
-- Variables: :run, :seq and :members are given by run.sh with -D; :client_id is pgbench's own.
-- The entry id e-<run>-<client>-<seq> is unique across all runs of one invocation.
\set member random(1, :members)
\set points random(1, 1000)
\set seq :seq + 1
WITH e AS (
    INSERT INTO entries (id, member, points, type)
    VALUES ('e-' || (:run)::text || '-' || (:client_id)::text || '-' || (:seq)::text,
            'm' || (:member)::text, (:points)::bigint, 'earn')
    ON CONFLICT (id) DO NOTHING
    RETURNING member, points
)
INSERT INTO balances (account, balance)
SELECT 'member:' || member, points FROM e
ON CONFLICT (account) DO UPDATE SET balance = balances.balance + EXCLUDED.balance;
