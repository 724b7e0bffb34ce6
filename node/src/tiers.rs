//! Tier housekeeping (spec/protocol.md §4.6, "downgrade at evaluation"; issue 14 items 1-2):
//! which `tier_change` entries the sequencer logs on its own, found without a scan of all
//! members outside a policy pass.
//!
//! Three sources, each read in bounded pages per housekeeping pass:
//! - **the due-index walk**: the state's due-index (`xt/<time><member>`, written when a member
//!   earns qualifying points or changes tier) is read from a cursor up to the pass's time. A
//!   key whose member is due a change yields it; a key written under an older tier policy is
//!   *stale* (no change is due at its time): its member's lapse time under the policy in force
//!   goes to the deferred index, and the cursor moves past it, so it is never read again.
//! - **the deferred index** (node-local `tiers/deferred/<time BE><member>`): lapse times that
//!   the state's index does not hold (or holds behind the cursor). A key due by the pass's time
//!   yields its member's change, or is moved to the member's later lapse time.
//! - **the policy pass**: after every `tier_policy` entry, every member (`m/` keys, in key
//!   order, [`TIER_PASS_MEMBERS_MAX`] per pass) is evaluated once under the new policy: a due
//!   change (a tier raised by new thresholds, a recorded tier the policy no longer names) is
//!   logged, a lapse time the state's index does not hold is deferred.
//!
//! The walk cursor and the policy pass (with the index and body of the policy it follows) are
//! node-local records (`tiers/walk`, `tiers/pass`), not part of the log's state: a replaying
//! auditor needs none of this, since it only decides *when* the node logs a change the state
//! machine checks anyway.
//!
//! Invariants:
//! - per pass, at most `changes_max` changes, [`TIER_DEFERRED_READS_MAX`] deferred keys,
//!   [`TIER_INDEX_READS_MAX`] due-index keys and [`TIER_PASS_MEMBERS_MAX`] members are read;
//! - a member yields at most one change per pass;
//! - the cursor moves past a due-index key only when its member's change is in the pass's
//!   writes or its member is not due and its lapse time (if any) is deferred or indexed ahead
//!   of the cursor. Keys the state machine writes later lie ahead of the cursor: they hold the
//!   lapse time of the tier recorded at that entry, which is after the entry's log time, which
//!   is after every earlier pass's time;
//! - progress (cursor, deferred keys, pass position) reaches the local column family only
//!   after the log commit holding the pass's changes ([`TierKeeper::finish`]): a crash in
//!   between repeats reads, never skips them; a change refused at append is deferred to the
//!   next pass.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use ledger::entry::{Entry, EntryKind, TierChange, TierPolicy};
use ledger::state::record_prefix;
use ledger::state::records::{self, after, prefix_end};
use ledger::state::State;
use ledger::types::{LogTime, MemberId};
use ledger_store::log::LogError;
use ledger_store::store::{Store, StoreError};

/// Most deferred-index keys read per pass.
pub const TIER_DEFERRED_READS_MAX: usize = 1024;
/// Most due-index keys the walk reads per pass.
pub const TIER_INDEX_READS_MAX: usize = 1024;
/// Most members a policy pass evaluates per housekeeping pass.
pub const TIER_PASS_MEMBERS_MAX: usize = 1024;
/// Most entries read back to find the `tier_policy` entry of a policy met without seeing its
/// entry appended (a crash between its commit and the pass record's write): it is in the last
/// commit, so one batch suffices.
pub const POLICY_SEARCH_ENTRIES_MAX: u64 = ledger_store::log::BATCH_WRITES_MAX as u64 * 2;

/// The walk cursor: the first due-index key not yet read.
const WALK_KEY: &[u8] = b"tiers/walk";
/// The policy pass record (JSON [`PolicyPass`]).
const PASS_KEY: &[u8] = b"tiers/pass";
/// `tiers/deferred/<time BE><member>`: empty values.
const DEFERRED_PREFIX: &[u8] = b"tiers/deferred/";

/// Where the pass over all members after a tier policy stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PolicyPass {
    /// The index of the `tier_policy` entry this pass follows (or, for a policy met without
    /// its entry among the last [`POLICY_SEARCH_ENTRIES_MAX`] entries, the log size then).
    policy_index: u64,
    /// The policy's body: a policy in force that differs starts a new pass.
    policy: TierPolicy,
    /// The last member evaluated; `None`: none yet.
    after: Option<MemberId>,
    /// Whether every member has been evaluated.
    done: bool,
}

/// What one housekeeping pass found: the tier changes to log, and the node-local progress to
/// record once they are durable.
#[derive(Debug, Default)]
pub struct TierPlan {
    /// Changes due at the pass's time, at most one per member.
    pub changes: Vec<TierChange>,
    local: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    walk: Option<Vec<u8>>,
    pass: Option<PolicyPass>,
    members: BTreeSet<MemberId>,
}

/// The tier housekeeping's node-local progress, owned by the sequencer thread.
#[derive(Debug)]
pub struct TierKeeper {
    walk: Vec<u8>,
    pass: Option<PolicyPass>,
}

fn corrupt(what: impl std::fmt::Display) -> LogError {
    LogError::Store(StoreError::Corrupt(format!("tier housekeeping: {what}")))
}

fn deferred_key(at: LogTime, member: &MemberId) -> Vec<u8> {
    [
        DEFERRED_PREFIX,
        &at.get().to_be_bytes(),
        member.as_str().as_bytes(),
    ]
    .concat()
}

fn parse_deferred_key(k: &[u8]) -> Option<(LogTime, MemberId)> {
    let rest = k.strip_prefix(DEFERRED_PREFIX)?;
    if rest.len() < 9 {
        return None;
    }
    let t = u64::from_be_bytes(rest[..8].try_into().ok()?);
    let m = std::str::from_utf8(&rest[8..]).ok()?.parse().ok()?;
    Some((LogTime::new(t).ok()?, m))
}

fn member_key(member: &MemberId) -> Vec<u8> {
    records::named(record_prefix::MEMBER, member.as_str())
}

/// The index of the latest `tier_policy` entry among the last [`POLICY_SEARCH_ENTRIES_MAX`]
/// entries of a log of `size` entries; `size` if there is none.
fn find_policy_index(store: &Store, size: u64) -> Result<u64, LogError> {
    let floor = size.saturating_sub(POLICY_SEARCH_ENTRIES_MAX);
    let page = ledger_store::log::BATCH_WRITES_MAX as u64 / 8;
    let mut end = size;
    while end > floor {
        let start = end.saturating_sub(page).max(floor);
        let entries = store.entries(start, end)?;
        for (k, bytes) in entries.iter().enumerate().rev() {
            let entry = Entry::from_bytes(bytes).map_err(corrupt)?;
            if matches!(entry.kind, EntryKind::TierPolicy(_)) {
                return Ok(start + k as u64);
            }
        }
        end = start;
    }
    Ok(size)
}

impl TierKeeper {
    /// Reads the progress recorded by an earlier run (none on a new node).
    pub fn load(store: &Store) -> Result<TierKeeper, LogError> {
        let walk = store
            .local_get(WALK_KEY)?
            .unwrap_or_else(|| record_prefix::DUE_TIER.to_vec());
        let pass = match store.local_get(PASS_KEY)? {
            None => None,
            Some(v) => Some(serde_json::from_slice(&v).map_err(corrupt)?),
        };
        Ok(TierKeeper { walk, pass })
    }

    /// Starts the pass over all members after the `tier_policy` entry at `index` (called once
    /// its commit is durable); a pass under way for an older policy is dropped.
    pub fn policy_logged(
        &mut self,
        store: &Store,
        index: u64,
        policy: &TierPolicy,
    ) -> Result<(), LogError> {
        let pass = PolicyPass {
            policy_index: index,
            policy: policy.clone(),
            after: None,
            done: false,
        };
        store.local_put(PASS_KEY, &serde_json::to_vec(&pass).map_err(corrupt)?)?;
        tracing::info!(policy_index = index, "tier policy pass started");
        self.pass = Some(pass);
        Ok(())
    }

    /// Whether a policy pass is under way (for tests and reports).
    pub fn pass_under_way(&self) -> bool {
        self.pass.as_ref().is_some_and(|p| !p.done)
    }

    /// Finds the tier changes due at `at` (at most `changes_max`) and the progress to record
    /// after they are logged. Reads committed state only: call it between commits.
    pub fn plan(
        &self,
        state: &State,
        store: &Store,
        at: LogTime,
        changes_max: usize,
    ) -> Result<TierPlan, LogError> {
        let mut plan = TierPlan::default();
        let Some(policy) = state.policies().tier.as_ref() else {
            return Ok(plan);
        };
        // A policy in force that no pass followed (its entry was committed, then the node
        // stopped before recording the pass; or it predates this release): follow it now.
        let mut pass = self.pass.clone();
        if pass.as_ref().map(|p| &p.policy) != Some(policy) {
            let policy_index = find_policy_index(store, state.size())?;
            tracing::info!(
                policy_index,
                "tier policy pass started for a policy in force"
            );
            pass = Some(PolicyPass {
                policy_index,
                policy: policy.clone(),
                after: None,
                done: false,
            });
            plan.pass = pass.clone();
        }

        // 1. Deferred lapse times that fell due.
        for (k, _) in store.local_scan(DEFERRED_PREFIX, TIER_DEFERRED_READS_MAX)? {
            let Some((t, member)) = parse_deferred_key(&k) else {
                return Err(corrupt(format!("bad deferred key {}", hex::encode(&k))));
            };
            if t > at {
                break;
            }
            // The key goes first: a re-deferral of the same member lands at a later time.
            plan.local.push((k, None));
            if !self.visit(state, &member, at, changes_max, &mut plan)? {
                plan.local.pop();
                break;
            }
        }

        // 2. The state's due-index from the cursor up to `at`.
        let end = records::due_end(record_prefix::DUE_TIER, at);
        for (k, _) in store.state_range(&self.walk, &end, TIER_INDEX_READS_MAX)? {
            let Some((_, member)) = records::parse_due_tier_key(&k) else {
                return Err(corrupt(format!("bad due-tier key {}", hex::encode(&k))));
            };
            if !self.visit(state, &member, at, changes_max, &mut plan)? {
                break;
            }
            plan.walk = Some(after(&k));
        }

        // 3. The policy pass, if one is under way.
        if let Some(mut p) = pass.filter(|p| !p.done) {
            let from = match &p.after {
                Some(m) => after(&member_key(m)),
                None => record_prefix::MEMBER.to_vec(),
            };
            let page = store.state_range(
                &from,
                &prefix_end(record_prefix::MEMBER),
                TIER_PASS_MEMBERS_MAX,
            )?;
            let full = page.len() >= TIER_PASS_MEMBERS_MAX;
            let mut stopped = false;
            for (k, _) in page {
                let member: MemberId = std::str::from_utf8(&k[record_prefix::MEMBER.len()..])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| corrupt(format!("bad member key {}", hex::encode(&k))))?;
                if !self.visit(state, &member, at, changes_max, &mut plan)? {
                    stopped = true;
                    break;
                }
                p.after = Some(member);
            }
            p.done = !stopped && !full;
            if p.done {
                tracing::info!(policy_index = p.policy_index, "tier policy pass done");
            }
            plan.pass = Some(p);
        }
        Ok(plan)
    }

    /// Evaluates `member` at `at` into `plan`; `false` when a change is due but the pass has
    /// no room for it (the caller stops its source there).
    fn visit(
        &self,
        state: &State,
        member: &MemberId,
        at: LogTime,
        changes_max: usize,
        plan: &mut TierPlan,
    ) -> Result<bool, LogError> {
        if plan.members.contains(member) {
            return Ok(true);
        }
        if let Some(change) = state.tier_change_due(member, at).map_err(LogError::State)? {
            if plan.changes.len() >= changes_max {
                return Ok(false);
            }
            plan.members.insert(member.clone());
            plan.changes.push(change);
            return Ok(true);
        }
        plan.members.insert(member.clone());
        let Some(lapse) = state
            .tier_valid_until(member, at)
            .map_err(LogError::State)?
        else {
            return Ok(true);
        };
        if lapse <= at {
            // Not due now yet lapsed by §4.6's `U`: nothing a later pass could add; the
            // member's next write re-evaluates them.
            return Ok(true);
        }
        let indexed = state
            .member(member)
            .map_err(LogError::State)?
            .and_then(|m| m.tier_due);
        let walk_reads_it = indexed == Some(lapse)
            && records::due_tier_key(lapse, member).as_slice() >= self.walk.as_slice();
        if !walk_reads_it {
            plan.local
                .push((deferred_key(lapse, member), Some(Vec::new())));
        }
        Ok(true)
    }

    /// Records `plan`'s progress once its changes are durable. `refused` are the members whose
    /// change the append refused: they are evaluated again at the next pass.
    pub fn finish(
        &mut self,
        store: &Store,
        mut plan: TierPlan,
        refused: &[MemberId],
        at: LogTime,
    ) -> Result<(), LogError> {
        for m in refused {
            plan.local.push((deferred_key(at, m), Some(Vec::new())));
        }
        if let Some(w) = &plan.walk {
            plan.local.push((WALK_KEY.to_vec(), Some(w.clone())));
        }
        if let Some(p) = &plan.pass {
            plan.local.push((
                PASS_KEY.to_vec(),
                Some(serde_json::to_vec(p).map_err(corrupt)?),
            ));
        }
        if plan.local.is_empty() {
            return Ok(());
        }
        store.local_write(&plan.local)?;
        if let Some(w) = plan.walk {
            self.walk = w;
        }
        if let Some(p) = plan.pass {
            self.pass = Some(p);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::entry::{Earn, Tier};
    use ledger::types::{DurationMs, Points};
    use ledger_store::log::{Log, Outcome, Write};

    fn t(v: u64) -> LogTime {
        LogTime::new(v).unwrap()
    }

    fn policy(window_ms: u64, tiers: &[(&str, u64)]) -> TierPolicy {
        TierPolicy {
            tiers: tiers
                .iter()
                .map(|(n, h)| Tier {
                    name: n.parse().unwrap(),
                    threshold: *h,
                })
                .collect(),
            window_ms: DurationMs::new(window_ms).unwrap(),
            grace_ms: DurationMs::new(0).unwrap(),
        }
    }

    const GOLD: &[(&str, u64)] = &[("blue", 0), ("gold", 100)];

    fn open() -> (tempfile::TempDir, Log) {
        let dir = tempfile::tempdir().unwrap();
        let signer =
            ledger::checkpoint::NoteSigner::from_seed("test.example/log", &[7; 32]).unwrap();
        let log = Log::open(dir.path(), signer).unwrap();
        (dir, log)
    }

    fn append(log: &mut Log, keeper: &mut TierKeeper, kinds: Vec<EntryKind>, at: u64) {
        let size = log.size();
        let writes: Vec<Write> = kinds
            .into_iter()
            .enumerate()
            .map(|(k, kind)| Write {
                id: format!("w.{size}.{k}").parse().unwrap(),
                kind,
            })
            .collect();
        let outcomes = log.append(&writes, t(at)).unwrap();
        for (w, o) in writes.iter().zip(&outcomes) {
            match (o, &w.kind) {
                (Outcome::Appended(i), EntryKind::TierPolicy(p)) => {
                    keeper.policy_logged(log.store(), *i, p).unwrap()
                }
                (Outcome::Appended(_), _) => {}
                (o, _) => panic!("{}: {o:?}", w.id),
            }
        }
    }

    fn earns(members: &[String], points: u64) -> Vec<EntryKind> {
        members
            .iter()
            .map(|m| {
                EntryKind::Earn(Earn {
                    member: m.parse().unwrap(),
                    points: Points::new(points).unwrap(),
                    qualifying: true,
                })
            })
            .collect()
    }

    /// One housekeeping pass as the sequencer runs it (tier changes only).
    fn pass(log: &mut Log, keeper: &mut TierKeeper, at: u64, max: usize) -> Vec<TierChange> {
        let at = log.next_time(t(at));
        let plan = keeper.plan(log.state(), log.store(), at, max).unwrap();
        let changes = plan.changes.clone();
        assert!(changes.len() <= max);
        if !changes.is_empty() {
            let size = log.size();
            let writes: Vec<Write> = changes
                .iter()
                .enumerate()
                .map(|(n, c)| Write {
                    id: format!("sys.tier.{size}.{n}").parse().unwrap(),
                    kind: EntryKind::TierChange(c.clone()),
                })
                .collect();
            for o in log.append(&writes, at).unwrap() {
                assert!(matches!(o, Outcome::Appended(_)), "{o:?}");
            }
        }
        keeper.finish(log.store(), plan, &[], at).unwrap();
        changes
    }

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|k| format!("{prefix}-{k:04}")).collect()
    }

    #[test]
    fn stale_index_entries_are_read_once_and_never_hide_a_due_change() {
        let (_dir, mut log) = open();
        let mut keeper = TierKeeper::load(log.store()).unwrap();
        // X earns under a long window; then, under a short one, more members than one pass
        // reads earn; then the long window is back: their index entries are stale and all
        // sort before X's.
        append(
            &mut log,
            &mut keeper,
            vec![EntryKind::TierPolicy(policy(10_000, GOLD))],
            1_000,
        );
        append(&mut log, &mut keeper, earns(&["x".into()], 100), 1_010);
        append(
            &mut log,
            &mut keeper,
            vec![EntryKind::TierPolicy(policy(5_000, GOLD))],
            1_020,
        );
        let s = names("s", TIER_INDEX_READS_MAX + 50);
        append(&mut log, &mut keeper, earns(&s, 100), 2_000);
        append(
            &mut log,
            &mut keeper,
            vec![EntryKind::TierPolicy(policy(10_000, GOLD))],
            2_100,
        );
        // The policy pass finds nothing due and defers every `s` to its real lapse time.
        let mut rounds = 0;
        while keeper.pass_under_way() {
            assert!(pass(&mut log, &mut keeper, 2_200 + rounds, 1024).is_empty());
            rounds += 1;
        }
        assert_eq!(
            rounds,
            2,
            "{} members, {TIER_PASS_MEMBERS_MAX} per pass",
            s.len() + 1
        );
        // At 11 020 X's gold has lapsed; the stale entries (about 7 000) are due by the index,
        // but no change is due for them (their gold lasts until about 12 000).
        let first = pass(&mut log, &mut keeper, 11_020, 1024);
        let second = pass(&mut log, &mut keeper, 11_021, 1024);
        let found: Vec<_> = first.iter().chain(&second).collect();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].member.as_str(), "x");
        assert_eq!(found[0].to.as_str(), "blue");
        // Read once: the walk has passed them, so a later pass reads nothing.
        let plan = keeper
            .plan(log.state(), log.store(), log.next_time(t(11_030)), 1024)
            .unwrap();
        assert!(plan.changes.is_empty() && plan.local.is_empty() && plan.walk.is_none());
        // The deferred index brings their downgrades at their real lapse time (by 14 147),
        // bounded per pass, each member once.
        let mut down = std::collections::BTreeSet::new();
        for k in 0..4 {
            for c in pass(&mut log, &mut keeper, 15_000 + k, 1000) {
                assert!(down.insert(c.member.to_string()), "{} twice", c.member);
            }
        }
        assert_eq!(down.len(), s.len());
    }

    #[test]
    fn a_policy_pass_logs_each_due_change_once_and_resumes_after_a_restart() {
        let (_dir, mut log) = open();
        let mut keeper = TierKeeper::load(log.store()).unwrap();
        let old = &[("blue", 0), ("silver", 100), ("gold", 10_000)];
        append(
            &mut log,
            &mut keeper,
            vec![EntryKind::TierPolicy(policy(1_000_000, old))],
            1_000,
        );
        let a = names("a", 1500);
        let b = names("b", 1500);
        append(&mut log, &mut keeper, earns(&a, 150), 1_010);
        append(&mut log, &mut keeper, earns(&b, 100), 1_020);
        let new = &[("bronze", 0), ("gold", 120)];
        append(
            &mut log,
            &mut keeper,
            vec![EntryKind::TierPolicy(policy(1_000_000, new))],
            1_030,
        );
        let mut seen = std::collections::BTreeSet::new();
        let record = |seen: &mut std::collections::BTreeSet<String>, changes: Vec<TierChange>| {
            for c in changes {
                let to = if c.member.as_str().starts_with('a') {
                    "gold"
                } else {
                    "bronze"
                };
                assert_eq!((c.from.as_str(), c.to.as_str()), ("silver", to));
                assert!(seen.insert(c.member.to_string()), "{} twice", c.member);
            }
        };
        record(&mut seen, pass(&mut log, &mut keeper, 1_040, 1024));
        assert_eq!(seen.len(), 1024);
        // A restart reads the pass back and goes on from where it stood.
        let mut keeper = TierKeeper::load(log.store()).unwrap();
        assert!(keeper.pass_under_way());
        for k in 0..4 {
            record(&mut seen, pass(&mut log, &mut keeper, 1_050 + k, 1024));
        }
        assert!(!keeper.pass_under_way());
        assert_eq!(seen.len(), a.len() + b.len());
        // A pass cut short by the change budget stops where it stood.
        let more = &[("bronze", 0), ("gold", 120), ("platinum", 140)];
        append(
            &mut log,
            &mut keeper,
            vec![EntryKind::TierPolicy(policy(1_000_000, more))],
            1_100,
        );
        let first = pass(&mut log, &mut keeper, 1_110, 10);
        assert_eq!(first.len(), 10);
        let mut up = first.len();
        while keeper.pass_under_way() {
            up += pass(&mut log, &mut keeper, 1_120 + up as u64, 1024).len();
        }
        assert_eq!(up, a.len(), "every a-* rises to platinum once");
    }

    #[test]
    fn a_policy_met_without_its_entry_seen_is_followed() {
        let (_dir, mut log) = open();
        let mut keeper = TierKeeper::load(log.store()).unwrap();
        append(
            &mut log,
            &mut keeper,
            vec![EntryKind::TierPolicy(policy(1_000_000, GOLD))],
            1_000,
        );
        append(&mut log, &mut keeper, earns(&names("m", 3), 100), 1_010);
        // The next policy commits, then the node stops before recording its pass.
        let writes = vec![Write {
            id: "pol-2".parse().unwrap(),
            kind: EntryKind::TierPolicy(policy(1_000_000, &[("blue", 0), ("gold", 200)])),
        }];
        log.append(&writes, t(1_020)).unwrap();
        let mut keeper = TierKeeper::load(log.store()).unwrap();
        let changes = pass(&mut log, &mut keeper, 1_030, 1024);
        assert_eq!(changes.len(), 3);
        assert_eq!(keeper.pass.as_ref().unwrap().policy_index, 7);
        assert!(!keeper.pass_under_way());
    }

    #[test]
    fn deferred_keys_round_trip_and_sort_by_time() {
        let a: MemberId = "zed".parse().unwrap();
        let b: MemberId = "abe".parse().unwrap();
        let k1 = deferred_key(LogTime::new(5).unwrap(), &a);
        let k2 = deferred_key(LogTime::new(6).unwrap(), &b);
        assert!(k1 < k2);
        assert_eq!(parse_deferred_key(&k1), Some((LogTime::new(5).unwrap(), a)));
        assert_eq!(parse_deferred_key(b"tiers/deferred/x"), None);
    }
}
