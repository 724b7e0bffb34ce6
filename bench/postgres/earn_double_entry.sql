-- earn_double_entry: one earn = insert the entry row (idempotent on id), insert its two
-- postings (debit `issued`, credit `member:<id>`), upsert the member's balance and update
-- the `issued` balance, in one statement (one round trip, one transaction, one WAL flush).
-- Every earn updates the single `issued` row, so concurrent earns serialise on its row lock.
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
    RETURNING id, member, points
), p AS (
    INSERT INTO postings (entry_id, account, amount)
    SELECT id, 'issued', -points FROM e
    UNION ALL
    SELECT id, 'member:' || member, points FROM e
    RETURNING 1
), m AS (
    INSERT INTO balances (account, balance)
    SELECT 'member:' || member, points FROM e
    ON CONFLICT (account) DO UPDATE SET balance = balances.balance + EXCLUDED.balance
    RETURNING 1
)
-- The contended row is updated last: its row lock is taken only after the postings and the
-- member balance are written (the subqueries on p and m run first), so the lock is held for
-- as short a time as possible: this last update, then the commit (WAL flush).
UPDATE balances SET balance = balances.balance - e.points
FROM e
WHERE balances.account = 'issued'
  AND (SELECT count(*) FROM p) = 2
  AND (SELECT count(*) FROM m) = 1;
