//! Tiers on time (issue 14 items 1-3, spec/protocol.md §4.6): real `loyalty-node` processes
//! that log due downgrades within their housekeeping interval, the tier changes a new tier
//! policy causes (in bounded passes that survive kill -9), and an upgrade in the same commit
//! as the earning that causes it. Time passes through short policy windows or through a
//! restart with `LOYALTY_CLOCK_SKEW_MS`.
//!
//! Every test bounds its own time and stops what it started (nodes are killed on drop).
//! Run through the workspace: `cargo test --workspace --test tiers`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use federation_tests::harness::{bounded, now_ms, wait_until, Node};
use sdk::{EarnItem, EarnOutcome, EarnRequest, Entry, EntryKind, SetTiersRequest, Tier};

/// Time limit of one test.
const LIMIT: Duration = Duration::from_secs(180);
/// The node's housekeeping interval (`node::sequencer::HOUSEKEEPING_INTERVAL`).
const HOUSEKEEPING_INTERVAL_MS: u64 = 500;
/// Allowance for a loaded machine on top of the housekeeping interval.
const SLACK_MS: u64 = 2_500;
/// Most tier changes the node logs per housekeeping pass (`HOUSEKEEPING_WRITES_MAX`), and the
/// most members a policy pass evaluates per housekeeping pass (`TIER_PASS_MEMBERS_MAX`).
const PASS_MAX: usize = 1024;
/// Most earns per `POST /v1/earns`.
const EARNS_PER_REQUEST: usize = 500;
/// The clock variable the node reads (`node::sequencer::CLOCK_SKEW_ENV`).
const SKEW_ENV: &str = "LOYALTY_CLOCK_SKEW_MS";

fn id(s: &str) -> sdk::EntryId {
    s.parse().unwrap()
}
fn member(s: &str) -> sdk::MemberId {
    s.parse().unwrap()
}
fn pts(p: u64) -> sdk::Points {
    sdk::Points::new(p).unwrap()
}
fn ms(v: u64) -> sdk::DurationMs {
    sdk::DurationMs::new(v).unwrap()
}
fn tiers(list: &[(&str, u64)]) -> Vec<Tier> {
    list.iter()
        .map(|(n, t)| Tier {
            name: n.parse().unwrap(),
            threshold: *t,
        })
        .collect()
}

async fn set_tiers(node: &Node, id_: &str, list: &[(&str, u64)], window: u64, grace: u64) -> u64 {
    node.client()
        .set_tiers(&SetTiersRequest {
            id: id(id_),
            tiers: tiers(list),
            window_ms: ms(window),
            grace_ms: ms(grace),
        })
        .await
        .unwrap_or_else(|e| panic!("tier policy {id_}: {e}"))
        .index
}

/// Earns `points` for each of `members`, in requests of [`EARNS_PER_REQUEST`].
async fn earn_all(node: &Node, tag: &str, members: &[String], points: u64) {
    let c = node.client();
    for (k, chunk) in members.chunks(EARNS_PER_REQUEST).enumerate() {
        let items: Vec<EarnItem> = chunk
            .iter()
            .enumerate()
            .map(|(j, m)| EarnItem::new(member(m), id(&format!("{tag}-{k}-{j}")), pts(points)))
            .collect();
        let r = c.earn_many(&items).await.expect("earns");
        for o in r.results {
            assert!(matches!(o, EarnOutcome::Logged { .. }), "an earn: {o:?}");
        }
    }
}

async fn tier_of(node: &Node, m: &str) -> String {
    node.client()
        .member(&member(m))
        .await
        .unwrap_or_else(|e| panic!("member {m}: {e}"))
        .tier
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Entries `start..end` of the node's log, decoded.
async fn entries(node: &Node, start: u64, end: u64) -> Vec<(u64, Entry)> {
    let c = node.client();
    let mut out = Vec::new();
    let mut from = start;
    while from < end {
        let to = end.min(from + 1000);
        for e in c.log_entries(from, to).await.expect("log entries") {
            let entry = Entry::from_bytes(e.entry.as_bytes()).expect("a canonical entry");
            out.push((e.index, entry));
        }
        from = to;
    }
    out
}

/// The `tier_change`s logged at `start..end`, by member: `(index, time, from, to)`, in order.
async fn tier_changes(
    node: &Node,
    start: u64,
    end: u64,
) -> BTreeMap<String, Vec<(u64, u64, String, String)>> {
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for (index, e) in entries(node, start, end).await {
        if let EntryKind::TierChange(c) = &e.kind {
            assert!(
                e.id.as_str().starts_with("sys.tier."),
                "a tier change the node wrote has a sys.tier id: {}",
                e.id
            );
            out.entry(c.member.to_string()).or_default().push((
                index,
                e.time.get(),
                c.from.to_string(),
                c.to.to_string(),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_points_leave_the_window_is_downgraded_within_the_housekeeping_interval() {
    bounded(LIMIT, "downgrade on time", async {
        let node = Node::start_new("brand-a", &[]).await;
        set_tiers(&node, "pol-1", &[("blue", 0), ("gold", 100)], 3_000, 500).await;
        let c = node.client();
        let w = c
            .earn(&member("m-lapse"), &EarnRequest::new(id("e-1"), pts(100)))
            .await
            .unwrap();
        let info = c.member(&member("m-lapse")).await.unwrap();
        assert_eq!(info.tier.map(|t| t.to_string()).as_deref(), Some("gold"));
        let until = info
            .tier_valid_until
            .expect("gold is held until a time")
            .get();
        let wait = until.saturating_sub(now_ms()) + HOUSEKEEPING_INTERVAL_MS + SLACK_MS;
        wait_until(
            "m-lapse is downgraded",
            Duration::from_millis(wait),
            || async {
                match tier_of(&node, "m-lapse").await.as_str() {
                    "blue" => Ok(()),
                    t => Err(format!("still {t}")),
                }
            },
        )
        .await;
        let size = node.log_size().await.unwrap();
        let changes = tier_changes(&node, w.index, size).await;
        let mine = &changes["m-lapse"];
        assert_eq!(mine.len(), 2, "the upgrade and the downgrade: {mine:?}");
        let (_, t, from, to) = &mine[1];
        assert_eq!((from.as_str(), to.as_str()), ("gold", "blue"));
        assert!(*t >= until, "not before the tier lapsed ({t} < {until})");
        assert!(
            *t - until <= HOUSEKEEPING_INTERVAL_MS + SLACK_MS,
            "logged {} ms after the tier lapsed",
            *t - until
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earn_that_lifts_the_tier_is_answered_with_the_upgrade_logged() {
    bounded(LIMIT, "upgrade at once", async {
        let node = Node::start_new("brand-a", &[]).await;
        set_tiers(&node, "pol-1", &[("blue", 0), ("gold", 100)], 3_600_000, 0).await;
        let c = node.client();
        let m = member("m-up");
        c.earn(&m, &EarnRequest::new(id("e-1"), pts(60)))
            .await
            .unwrap();
        assert_eq!(tier_of(&node, "m-up").await, "blue");
        let w = c
            .earn(&m, &EarnRequest::new(id("e-2"), pts(50)))
            .await
            .unwrap();
        // The very next read sees the new tier: no housekeeping pass was waited for.
        assert_eq!(tier_of(&node, "m-up").await, "gold");
        let cp = w.checkpoint.as_ref().expect("a verified receipt");
        assert!(
            cp.size >= w.index + 2,
            "the earn's checkpoint (size {}) covers the tier change after it (index {})",
            cp.size,
            w.index + 1
        );
        let after = entries(&node, w.index + 1, w.index + 2).await;
        let (_, e) = &after[0];
        assert_eq!(e.id.as_str(), format!("sys.tier.{}", w.index));
        match &e.kind {
            EntryKind::TierChange(t) => {
                assert_eq!(t.member, m);
                assert_eq!((t.from.as_str(), t.to.as_str()), ("blue", "gold"));
            }
            k => panic!("entry after the earn: {k:?}"),
        }
    })
    .await;
}

/// Members of three groups under policy `blue 0 / silver 100 / gold 10000`: `a-*` (150
/// points, silver), `b-*` (100, silver), `c-*` (50, blue). The new policy `bronze 0 / gold 120`
/// raises every `a-*` to gold and moves every `b-*` from silver (a tier it no longer names) to
/// bronze; `c-*` keep the base tier, now called bronze, with no change logged.
struct PolicyScenario {
    node: Node,
    /// The index of the new policy's entry.
    policy_index: u64,
    a: Vec<String>,
    b: Vec<String>,
    c: Vec<String>,
}

const GROUP: usize = 1300;

async fn policy_scenario() -> PolicyScenario {
    let node = Node::start_new("brand-a", &[]).await;
    set_tiers(
        &node,
        "pol-1",
        &[("blue", 0), ("silver", 100), ("gold", 10_000)],
        3_600_000,
        0,
    )
    .await;
    let a: Vec<String> = (0..GROUP).map(|k| format!("a-{k:04}")).collect();
    let b: Vec<String> = (0..GROUP).map(|k| format!("b-{k:04}")).collect();
    let c: Vec<String> = (0..100).map(|k| format!("c-{k:03}")).collect();
    earn_all(&node, "ea", &a, 150).await;
    earn_all(&node, "eb", &b, 100).await;
    earn_all(&node, "ec", &c, 50).await;
    assert_eq!(tier_of(&node, "a-0000").await, "silver");
    assert_eq!(tier_of(&node, "b-0000").await, "silver");
    assert_eq!(tier_of(&node, "c-000").await, "blue");
    let policy_index = set_tiers(
        &node,
        "pol-2",
        &[("bronze", 0), ("gold", 120)],
        3_600_000,
        0,
    )
    .await;
    PolicyScenario {
        node,
        policy_index,
        a,
        b,
        c,
    }
}

/// Waits until every change the new policy causes is logged, then checks that each affected
/// member has exactly one, and that every member reads the right tier.
async fn check_policy_scenario(s: &PolicyScenario) {
    let expected = (s.a.len() + s.b.len()) as u64;
    let end = s.policy_index + 1 + expected;
    assert!(
        expected as usize > PASS_MAX,
        "more changes than one housekeeping pass logs"
    );
    wait_until(
        "the new policy's tier changes are logged",
        Duration::from_secs(60),
        || async {
            let size = s.node.log_size().await?;
            if size >= end {
                Ok(())
            } else {
                Err(format!("{} of {expected}", size - s.policy_index - 1))
            }
        },
    )
    .await;
    let changes = tier_changes(&s.node, s.policy_index + 1, end).await;
    for m in &s.a {
        let c = changes
            .get(m)
            .unwrap_or_else(|| panic!("no change for {m}"));
        assert_eq!(c.len(), 1, "{m}: {c:?}");
        assert_eq!(
            (c[0].2.as_str(), c[0].3.as_str()),
            ("silver", "gold"),
            "{m}"
        );
    }
    for m in &s.b {
        let c = changes
            .get(m)
            .unwrap_or_else(|| panic!("no change for {m}"));
        assert_eq!(c.len(), 1, "{m}: {c:?}");
        assert_eq!(
            (c[0].2.as_str(), c[0].3.as_str()),
            ("silver", "bronze"),
            "{m}"
        );
    }
    for m in &s.c {
        assert!(!changes.contains_key(m), "{m} needed no change");
    }
    assert_eq!(changes.len() as u64, expected);
    for (m, t) in [
        (&s.a[0], "gold"),
        (&s.a[GROUP - 1], "gold"),
        (&s.b[0], "bronze"),
        (&s.b[GROUP - 1], "bronze"),
        (&s.c[0], "bronze"),
    ] {
        assert_eq!(tier_of(&s.node, m).await, t, "{m}");
    }
    // Nothing more is logged afterwards: one more housekeeping pass adds no entry.
    let before = s.node.log_size().await.unwrap();
    let deadline = Instant::now() + Duration::from_millis(3 * HOUSEKEEPING_INTERVAL_MS);
    while Instant::now() < deadline {
        assert_eq!(
            s.node.log_size().await.unwrap(),
            before,
            "no entry after the pass"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_tier_policy_raises_and_renames_tiers_of_all_affected_members() {
    bounded(LIMIT, "policy pass", async {
        let s = policy_scenario().await;
        check_policy_scenario(&s).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_in_the_middle_of_a_policy_pass_resumes_it() {
    bounded(LIMIT, "policy pass after kill -9", async {
        let mut s = policy_scenario().await;
        let expected = (s.a.len() + s.b.len()) as u64;
        // Kill as soon as the first pass's changes are committed and before the last ones.
        let logged = loop {
            let size = s.node.log_size().await.unwrap();
            let logged = size - s.policy_index - 1;
            if logged > 0 {
                break logged;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        s.node.kill9();
        assert!(
            logged < expected,
            "the pass ({expected} changes, {PASS_MAX} per {HOUSEKEEPING_INTERVAL_MS} ms) had \
             already finished when the node was killed"
        );
        s.node.start().await;
        check_policy_scenario(&s).await;
    })
    .await;
}

/// Index entries written under an older policy (stale: no change is due at their time)
/// never hide a real due change behind them, however many there are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_due_index_entries_do_not_hide_a_due_downgrade() {
    bounded(LIMIT, "stale index entries", async {
        const MIN: u64 = 60_000;
        let levels = [("blue", 0), ("gold", 100)];
        let mut node = Node::start_new("brand-a", &[]).await;
        // X earns under a 10-minute window: X's gold lapses 10 minutes from now.
        set_tiers(&node, "pol-long", &levels, 10 * MIN, 0).await;
        node.client()
            .earn(&member("x"), &EarnRequest::new(id("e-x"), pts(100)))
            .await
            .unwrap();
        // A minute later, under a 5-minute window (X keeps gold meanwhile), more members than
        // one pass reads earn: the index says their gold lapses 5 minutes later.
        set_tiers(&node, "pol-short", &levels, 5 * MIN, 0).await;
        node.kill9();
        node.set_env(SKEW_ENV, Some(&MIN.to_string()));
        node.start().await;
        let s: Vec<String> = (0..PASS_MAX + 100).map(|k| format!("s-{k:04}")).collect();
        earn_all(&node, "es", &s, 100).await;
        // Back to 10 minutes: their entries are stale (they keep gold until 11 minutes), and
        // they all sort before X's (10 minutes).
        let p = set_tiers(&node, "pol-long-again", &levels, 10 * MIN, 0).await;
        node.kill9();
        // 10 minutes and 20 s after X earned: X's gold has lapsed, the others' has not, and
        // their stale entries are all due by the index.
        node.set_env(SKEW_ENV, Some(&(10 * MIN + 20_000).to_string()));
        node.start().await;
        wait_until(
            "x is downgraded",
            // Well before the others' gold lapses (about 40 s later), when the index would
            // also yield them: X must not wait behind their stale entries.
            Duration::from_secs(15),
            || async {
                match tier_of(&node, "x").await.as_str() {
                    "blue" => Ok(()),
                    t => Err(format!("still {t}")),
                }
            },
        )
        .await;
        let size = node.log_size().await.unwrap();
        let changes = tier_changes(&node, p + 1, size).await;
        assert_eq!(changes.len(), 1, "only x changed: {changes:?}");
        assert_eq!(changes["x"].len(), 1);
        assert_eq!(tier_of(&node, &s[0]).await, "gold");
        assert_eq!(tier_of(&node, &s[s.len() - 1]).await, "gold");
    })
    .await;
}
