-- earn_double_entry_batch: the batch path. One transaction = 500 earns, each the same durable
-- work as earn_double_entry (an entry row, idempotent on id; two postings; the member's
-- balance), and one update of the `issued` balance by their sum: one statement, one round
-- trip, one WAL flush for 500 earns. Member balances are upserted in account order (summed
-- per member first, as one statement cannot update a row twice), so concurrent batches lock
-- rows in the same order and cannot deadlock.
--
-- Variables: :run, :seq and :members are given by run.sh with -D; :client_id is pgbench's own.
-- Entry ids e-<run>-<client>-<seq>-<k> are unique across all runs of one invocation.
\set seq :seq + 1
WITH g AS (
    SELECT 'e-' || (:run)::text || '-' || (:client_id)::text || '-' || (:seq)::text || '-' || k::text AS id,
           'm' || (1 + floor(random() * :members))::bigint::text AS member,
           (1 + floor(random() * 1000))::bigint AS points
    FROM generate_series(1, 500) AS k
), e AS (
    INSERT INTO entries (id, member, points, type)
    SELECT id, member, points, 'earn' FROM g
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
    SELECT 'member:' || member, sum(points) FROM e GROUP BY member ORDER BY 1
    ON CONFLICT (account) DO UPDATE SET balance = balances.balance + EXCLUDED.balance
    RETURNING 1
)
UPDATE balances SET balance = balances.balance - (SELECT sum(points) FROM e)
WHERE balances.account = 'issued'
  AND (SELECT count(*) FROM p) = 2 * (SELECT count(*) FROM e)
  AND (SELECT count(*) FROM m) > 0;
