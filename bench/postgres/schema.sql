-- Schema for the PostgreSQL side of the earn benchmark (bench/postgres/run.sh).
-- Loaded fresh before every pgbench run, so runs are independent of each other.
--
-- psql variable :members (default set by run.sh) is the number of pre-existing members.

SET client_min_messages = warning;

DROP TABLE IF EXISTS postings;
DROP TABLE IF EXISTS entries;
DROP TABLE IF EXISTS balances;

-- One row per ledger entry. The primary key on the client-chosen id is what makes an
-- earn idempotent: a retried earn with the same id conflicts and changes nothing.
CREATE TABLE entries (
    id      text        PRIMARY KEY,
    member  text        NOT NULL,
    points  bigint      NOT NULL CHECK (points > 0),
    time    timestamptz NOT NULL DEFAULT now(),
    type    text        NOT NULL
);
-- A member's history (the node keeps the same index: its `history` column family,
-- member id || entry index). Lets "list member m's entries" avoid a full scan.
CREATE INDEX entries_member_time ON entries (member, time);

-- Double-entry postings: every entry moves points between two accounts and its
-- postings sum to zero. Only written by the earn_double_entry variant.
CREATE TABLE postings (
    entry_id text   NOT NULL REFERENCES entries (id),
    account  text   NOT NULL,
    amount   bigint NOT NULL,
    PRIMARY KEY (entry_id, account)
);

-- Account balances: `member:<id>` for members, `issued` for the system account that
-- is debited when points are created. fillfactor leaves room in each page for HOT
-- updates (a PostgreSQL-favourable setting for an update-heavy table).
CREATE TABLE balances (
    account text   PRIMARY KEY,
    balance bigint NOT NULL
) WITH (fillfactor = 80);

INSERT INTO balances (account, balance)
SELECT 'member:m' || g, 0 FROM generate_series(1, :members) AS g;
INSERT INTO balances (account, balance) VALUES ('issued', 0);
-- Only for the optional earn_double_entry_sharded variant: the `issued` balance kept as the
-- sum of 64 rows issued#0..issued#63, so that concurrent earns rarely share a row.
INSERT INTO balances (account, balance)
SELECT 'issued#' || g, 0 FROM generate_series(0, 63) AS g;

-- Set hint bits and the visibility map now, so the timed run does not pay for it.
VACUUM (ANALYZE) entries, postings, balances;
