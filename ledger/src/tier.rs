//! Tier rules (spec/protocol.md §4.6): pure functions of a policy and a member's qualifying
//! earnings.
//!
//! Definitions, with `W` the window and `G` the grace period of the policy:
//! - `Q(s)`: qualifying points earned at log times in `(s - W, s]`.
//! - `E(s)`: the highest tier whose threshold is at most `Q(s)`.
//! - `tier(t) = max { E(s) : s in [t - G, t] }`: a member keeps a tier for `G` after they stop
//!   qualifying for it, gains a tier the moment they qualify (upgrade at once), and loses it
//!   only when an evaluation at `t` finds `tier(t)` lower (downgrade at evaluation).
//!
//! Redemptions, holds and refunds never change `Q`: only qualifying earnings count.

use crate::entry::TierPolicy;
use crate::types::{DurationMs, LogTime};

/// Most qualifying earnings remembered per member when no tier policy bounds the window.
pub const QUALIFYING_EVENTS_MAX: usize = 4096;

/// One qualifying earning: log time and points.
pub type QualifyingEvent = (LogTime, u64);

/// `Q(s)`: points of `events` (sorted by time) at times in `(s - window, s]`.
fn qualifying_at(events: &[QualifyingEvent], s: u64, window: DurationMs) -> u128 {
    // t in (s - W, s], computed without underflow: t + W > s.
    events
        .iter()
        .filter(|(t, _)| t.get() as u128 + window.get() as u128 > s as u128 && t.get() <= s)
        .map(|(_, p)| *p as u128)
        .sum()
}

/// `E(s)` as an index into `policy.tiers`.
fn earned_rank(policy: &TierPolicy, events: &[QualifyingEvent], s: u64) -> usize {
    let q = qualifying_at(events, s, policy.window_ms);
    policy
        .tiers
        .iter()
        .rposition(|t| (t.threshold as u128) <= q)
        .unwrap_or(0)
}

/// `tier(t)` as an index into `policy.tiers`.
pub fn tier_rank_at(policy: &TierPolicy, events: &[QualifyingEvent], t: LogTime) -> usize {
    let start = t.minus(policy.grace_ms).get();
    // E only rises at event times, so its maximum over [start, t] is reached at `start` or
    // at an event time inside the interval.
    let mut rank = earned_rank(policy, events, start);
    for (s, _) in events {
        if s.get() > start && s.get() <= t.get() {
            rank = rank.max(earned_rank(policy, events, s.get()));
        }
    }
    rank
}

/// The log time until which a member holding tier `rank` keeps it if they earn nothing more:
/// the first time `Q` drops below the tier's threshold, plus the grace period. `None` when
/// the tier is the base tier (held forever).
pub fn tier_valid_until(
    policy: &TierPolicy,
    events: &[QualifyingEvent],
    rank: usize,
    now: LogTime,
) -> Option<LogTime> {
    let threshold = policy.tiers.get(rank)?.threshold as u128;
    if rank == 0 {
        return None;
    }
    // Walk events newest first; the earning whose leaving the window makes Q fall below the
    // threshold is the one at which the cumulative sum first reaches it.
    let mut sum: u128 = 0;
    let lo = now.get().saturating_sub(policy.window_ms.get());
    for (t, p) in events
        .iter()
        .rev()
        .filter(|(t, _)| t.get() > lo && t.get() <= now.get())
    {
        sum += *p as u128;
        if sum >= threshold {
            return Some(t.plus(policy.window_ms).plus(policy.grace_ms));
        }
    }
    // Not qualifying now: the tier lasts until the grace period after it last qualified.
    let mut last = None;
    for (s, _) in events {
        if s.get() <= now.get() && earned_rank(policy, events, s.get()) >= rank {
            last = Some(*s);
        }
    }
    last.map(|s| {
        // Q(s) >= threshold; find when it drops below after s.
        let lo = s.get().saturating_sub(policy.window_ms.get());
        let mut sum: u128 = 0;
        for (t, p) in events
            .iter()
            .rev()
            .filter(|(t, _)| t.get() > lo && t.get() <= s.get())
        {
            sum += *p as u128;
            if sum >= threshold {
                return t.plus(policy.window_ms).plus(policy.grace_ms);
            }
        }
        s.plus(policy.grace_ms)
    })
}

/// Drops events that can no longer affect any evaluation at or after `now`; without a policy,
/// keeps at most [`QUALIFYING_EVENTS_MAX`] events.
pub fn prune(events: &mut Vec<QualifyingEvent>, policy: Option<&TierPolicy>, now: LogTime) {
    if let Some(p) = policy {
        let horizon = now.minus(p.grace_ms).minus(p.window_ms).get();
        events.retain(|(t, _)| t.get() > horizon);
    }
    // With a policy the window bounds the list; without one, keep only the newest earnings.
    if policy.is_none() && events.len() > QUALIFYING_EVENTS_MAX {
        let excess = events.len() - QUALIFYING_EVENTS_MAX;
        events.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Tier;

    fn policy() -> TierPolicy {
        TierPolicy {
            tiers: vec![
                Tier {
                    name: "blue".parse().unwrap(),
                    threshold: 0,
                },
                Tier {
                    name: "silver".parse().unwrap(),
                    threshold: 100,
                },
                Tier {
                    name: "gold".parse().unwrap(),
                    threshold: 500,
                },
            ],
            window_ms: DurationMs::new(1000).unwrap(),
            grace_ms: DurationMs::new(200).unwrap(),
        }
    }

    fn t(v: u64) -> LogTime {
        LogTime::new(v).unwrap()
    }

    #[test]
    fn upgrade_is_immediate_and_downgrade_waits_for_grace() {
        let p = policy();
        let ev = vec![(t(10), 60), (t(20), 50)];
        assert_eq!(tier_rank_at(&p, &ev, t(15)), 0);
        assert_eq!(tier_rank_at(&p, &ev, t(20)), 1);
        // At 1010 the first earning leaves the window: Q = 50, but grace keeps silver.
        assert_eq!(tier_rank_at(&p, &ev, t(1010)), 1);
        assert_eq!(tier_rank_at(&p, &ev, t(1209)), 1);
        assert_eq!(tier_rank_at(&p, &ev, t(1210)), 0);
        assert_eq!(tier_valid_until(&p, &ev, 1, t(20)), Some(t(1210)));
        assert_eq!(tier_valid_until(&p, &ev, 1, t(1100)), Some(t(1210)));
        assert_eq!(tier_valid_until(&p, &ev, 0, t(20)), None);
    }

    #[test]
    fn pruning_keeps_what_future_evaluations_need() {
        let p = policy();
        let mut ev = vec![(t(10), 60), (t(20), 50), (t(1500), 5)];
        prune(&mut ev, Some(&p), t(1210));
        assert_eq!(ev, vec![(t(20), 50), (t(1500), 5)]);
    }
}
