-- earn_double_entry_sharded (optional, not in the default VARIANTS): earn_double_entry with the
-- `issued` balance split over 64 rows (issued#0..issued#63; the balance of `issued` is their
-- sum) and each earn updating one at random. The usual PostgreSQL answer to a hot counter row;
-- it shows what full double-entry costs when earns do not all queue behind one row lock.
-- The postings are the same as earn_double_entry's (debit `issued`, credit `member:<id>`).
--
-- Variables: :run, :seq and :members are given by run.sh with -D; :client_id is pgbench's own.
\set member random(1, :members)
\set points random(1, 1000)
\set shard random(0, 63)
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
WHERE balances.account = 'issued#' || (:shard)::text
  AND (SELECT count(*) FROM p) = 2
  AND (SELECT count(*) FROM m) = 1;
