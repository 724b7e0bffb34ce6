//! Unit and property tests of the accounting state machine.

use super::*;
use crate::entry::{ExpiryPolicy, HexBytes, Tier};
use crate::types::DurationMs;
use proptest::prelude::*;

fn m(s: &str) -> MemberId {
    s.parse().unwrap()
}
fn id(s: &str) -> EntryId {
    s.parse().unwrap()
}
fn pts(v: u64) -> Points {
    Points::new(v).unwrap()
}
fn t(v: u64) -> LogTime {
    LogTime::new(v).unwrap()
}

/// A log under test: applies entries with increasing times and records the accepted ones.
struct Log {
    state: State,
    time: u64,
    entries: Vec<Entry>,
    records: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Log {
    fn new() -> Log {
        Log {
            state: State::new(),
            time: 1000,
            entries: Vec::new(),
            records: BTreeMap::new(),
        }
    }

    fn at(&mut self, time: u64) -> &mut Self {
        self.time = time;
        self
    }

    fn apply(&mut self, eid: &str, kind: EntryKind) -> Result<Applied, StateError> {
        self.time += 1;
        let e = Entry {
            time: t(self.time),
            id: id(eid),
            kind,
        };
        let before = self.state.clone();
        let r = self
            .state
            .apply(LogIndex::new(self.state.size()).unwrap(), &e);
        match &r {
            Ok(_) => {
                self.entries.push(e);
                for (k, v) in self.state.take_changes() {
                    match v {
                        Some(v) => self.records.insert(k, v),
                        None => self.records.remove(&k),
                    };
                }
            }
            Err(_) => {
                assert_eq!(self.state, before, "a refused entry changed the state");
                assert!(
                    self.state.changed.is_empty(),
                    "a refused entry marked records changed"
                );
            }
        }
        r
    }

    fn earn(&mut self, eid: &str, member: &str, p: u64) -> Result<Applied, StateError> {
        self.apply(
            eid,
            EntryKind::Earn(Earn {
                member: m(member),
                points: pts(p),
                qualifying: true,
            }),
        )
    }

    fn redeem(&mut self, eid: &str, member: &str, p: u64) -> Result<Applied, StateError> {
        self.apply(
            eid,
            EntryKind::Redeem(Redeem {
                member: m(member),
                points: pts(p),
            }),
        )
    }

    fn hold(
        &mut self,
        eid: &str,
        member: &str,
        p: u64,
        expires: u64,
    ) -> Result<Applied, StateError> {
        self.apply(
            eid,
            EntryKind::Hold(Hold {
                member: m(member),
                points: pts(p),
                expires_at: t(expires),
                payee: None,
                condition: None,
            }),
        )
    }

    fn balance(&self, member: &str) -> u64 {
        self.state.member(&m(member)).map_or(0, |s| s.balance)
    }

    fn replay_equals_live(&self) {
        let mut replayed = State::new();
        for (i, e) in self.entries.iter().enumerate() {
            replayed
                .apply(LogIndex::new(i as u64).unwrap(), e)
                .expect("an accepted entry replays");
        }
        assert_eq!(replayed, self.state, "replay differs from live state");
        let loaded = State::from_records(self.records.iter()).expect("records load");
        assert_eq!(loaded, self.state, "stored records differ from live state");
    }
}

fn expiry(ms: u64) -> EntryKind {
    EntryKind::ExpiryPolicy(ExpiryPolicy {
        lot_lifetime_ms: Some(DurationMs::new(ms).unwrap()),
    })
}

#[test]
fn earn_then_redeem_moves_points_between_accounts() {
    let mut l = Log::new();
    l.earn("e1", "alice", 100).unwrap();
    let a = l.redeem("r1", "alice", 30).unwrap();
    assert_eq!(
        a.transfers,
        vec![Transfer {
            from: AccountId::Member(m("alice")),
            to: AccountId::Redeemed,
            points: 30
        }]
    );
    assert_eq!(l.balance("alice"), 70);
    assert_eq!(l.state.account_balance(&AccountId::Issued), -100);
    assert_eq!(l.state.account_balance(&AccountId::Redeemed), 30);
    l.state.check_invariants().unwrap();
    l.replay_equals_live();
}

#[test]
fn redeem_more_than_available_is_refused() {
    let mut l = Log::new();
    l.earn("e1", "alice", 10).unwrap();
    assert_eq!(
        l.redeem("r1", "alice", 11),
        Err(StateError::InsufficientPoints {
            available: 10,
            requested: 11
        })
    );
    assert_eq!(
        l.redeem("r2", "bob", 1),
        Err(StateError::UnknownMember(m("bob")))
    );
}

#[test]
fn a_reused_id_is_refused_and_changes_nothing() {
    let mut l = Log::new();
    l.earn("e1", "alice", 10).unwrap();
    assert_eq!(
        l.earn("e1", "alice", 10),
        Err(StateError::DuplicateId(id("e1"), LogIndex::new(0).unwrap()))
    );
    assert_eq!(l.balance("alice"), 10);
}

#[test]
fn log_time_must_strictly_increase() {
    let mut l = Log::new();
    l.earn("e1", "alice", 10).unwrap();
    l.time -= 1; // the next apply uses the same time as e1
    assert!(matches!(
        l.earn("e2", "alice", 10),
        Err(StateError::TimeNotIncreasing { .. })
    ));
}

#[test]
fn debits_consume_soonest_expiring_lots_first() {
    let mut l = Log::new();
    l.apply("p1", expiry(10_000)).unwrap();
    l.earn("e1", "alice", 50).unwrap(); // lot 1 expires at 11_003
    l.apply("p2", expiry(1_000)).unwrap();
    l.earn("e2", "alice", 50).unwrap(); // lot 3 expires at ~2_005, sooner
    l.redeem("r1", "alice", 60).unwrap();
    let lots = &l.state.member(&m("alice")).unwrap().lots;
    assert_eq!(lots.len(), 1);
    assert_eq!(lots[0].id, LogIndex::new(1).unwrap());
    assert_eq!(lots[0].remaining, 40);
    l.replay_equals_live();
}

#[test]
fn expired_lots_cannot_be_spent_and_expire_explicitly() {
    let mut l = Log::new();
    l.apply("p1", expiry(100)).unwrap();
    l.earn("e1", "alice", 50).unwrap(); // time 1002, expires 1102
    l.at(1200);
    assert_eq!(
        l.redeem("r1", "alice", 1),
        Err(StateError::InsufficientPoints {
            available: 0,
            requested: 1
        })
    );
    let due = l.state.due_expiries(t(1201), 10);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].points, pts(50));
    // The wrong amount, a live lot, or an unknown lot are refused.
    let mut wrong = due[0].clone();
    wrong.points = pts(49);
    assert!(matches!(
        l.apply("x1", EntryKind::Expire(wrong)),
        Err(StateError::ExpireAmountMismatch { .. })
    ));
    l.apply("x2", EntryKind::Expire(due[0].clone())).unwrap();
    assert_eq!(l.balance("alice"), 0);
    assert_eq!(l.state.account_balance(&AccountId::Expired), 50);
    assert!(l.state.due_expiries(t(5000), 10).is_empty());
    l.replay_equals_live();
}

#[test]
fn expire_of_a_live_lot_is_refused() {
    let mut l = Log::new();
    l.apply("p1", expiry(100_000)).unwrap();
    l.earn("e1", "alice", 50).unwrap();
    assert!(matches!(
        l.apply(
            "x1",
            EntryKind::Expire(Expire {
                member: m("alice"),
                lot: LogIndex::new(1).unwrap(),
                points: pts(50)
            })
        ),
        Err(StateError::LotNotExpired { .. })
    ));
}

#[test]
fn hold_post_moves_pending_points_to_redeemed_once() {
    let mut l = Log::new();
    l.earn("e1", "alice", 100).unwrap();
    l.hold("h1", "alice", 40, 10_000).unwrap();
    let s = l.state.member(&m("alice")).unwrap();
    assert_eq!((s.balance, s.pending), (60, 40));
    l.apply(
        "p1",
        EntryKind::Post(Post {
            hold: id("h1"),
            preimage: None,
        }),
    )
    .unwrap();
    assert_eq!(l.state.member(&m("alice")).unwrap().pending, 0);
    assert_eq!(l.state.account_balance(&AccountId::Redeemed), 40);
    assert!(matches!(
        l.apply(
            "p2",
            EntryKind::Post(Post {
                hold: id("h1"),
                preimage: None
            })
        ),
        Err(StateError::HoldNotOpen {
            status: "posted",
            ..
        })
    ));
    assert!(matches!(
        l.apply("v1", EntryKind::Void(Void { hold: id("h1") })),
        Err(StateError::HoldNotOpen {
            status: "posted",
            ..
        })
    ));
    l.replay_equals_live();
}

#[test]
fn a_voided_hold_returns_points_and_cannot_be_posted() {
    let mut l = Log::new();
    l.earn("e1", "alice", 100).unwrap();
    l.hold("h1", "alice", 40, 10_000).unwrap();
    l.apply("v1", EntryKind::Void(Void { hold: id("h1") }))
        .unwrap();
    assert_eq!(l.balance("alice"), 100);
    assert!(matches!(
        l.apply(
            "p1",
            EntryKind::Post(Post {
                hold: id("h1"),
                preimage: None
            })
        ),
        Err(StateError::HoldNotOpen {
            status: "voided",
            ..
        })
    ));
    l.replay_equals_live();
}

#[test]
fn hold_cannot_be_posted_after_expiry_but_can_be_released() {
    let mut l = Log::new();
    l.earn("e1", "alice", 100).unwrap();
    l.hold("h1", "alice", 40, 2_000).unwrap();
    l.at(2_000);
    assert!(matches!(
        l.apply(
            "p1",
            EntryKind::Post(Post {
                hold: id("h1"),
                preimage: None
            })
        ),
        Err(StateError::HoldExpired { .. })
    ));
    assert_eq!(l.state.due_hold_releases(t(2_001), 10), vec![id("h1")]);
    l.apply("v1", EntryKind::Void(Void { hold: id("h1") }))
        .unwrap();
    assert!(l.state.due_hold_releases(t(9_999), 10).is_empty());
    assert_eq!(l.balance("alice"), 100);
}

#[test]
fn a_hold_must_expire_in_the_future() {
    let mut l = Log::new();
    l.earn("e1", "alice", 100).unwrap();
    assert!(matches!(
        l.hold("h1", "alice", 1, 500),
        Err(StateError::HoldExpiryNotInFuture { .. })
    ));
}

#[test]
fn conditional_hold_needs_the_right_preimage() {
    let mut l = Log::new();
    l.earn("e1", "alice", 100).unwrap();
    let preimage = b"secret".to_vec();
    let condition = HexHash(Sha256::digest(&preimage).into());
    l.apply(
        "h1",
        EntryKind::Hold(Hold {
            member: m("alice"),
            points: pts(10),
            expires_at: t(50_000),
            payee: Some("brand-b".parse().unwrap()),
            condition: Some(condition),
        }),
    )
    .unwrap();
    let post = |p: Option<&[u8]>| {
        EntryKind::Post(Post {
            hold: id("h1"),
            preimage: p.map(|p| HexBytes(p.to_vec())),
        })
    };
    assert_eq!(l.apply("p1", post(None)), Err(StateError::PreimageRequired));
    assert_eq!(
        l.apply("p2", post(Some(b"wrong"))),
        Err(StateError::ConditionNotMet)
    );
    l.apply("p3", post(Some(&preimage))).unwrap();
    let clearing = AccountId::Clearing("brand-b".parse().unwrap());
    assert_eq!(l.state.account_balance(&clearing), 10);
    l.replay_equals_live();
}

#[test]
fn refunds_are_bounded_by_the_redemption() {
    let mut l = Log::new();
    l.earn("e1", "alice", 100).unwrap();
    l.redeem("r1", "alice", 60).unwrap();
    l.apply(
        "f1",
        EntryKind::Refund(Refund {
            redemption: id("r1"),
            points: pts(20),
        }),
    )
    .unwrap();
    assert_eq!(l.balance("alice"), 60);
    assert_eq!(
        l.apply(
            "f2",
            EntryKind::Refund(Refund {
                redemption: id("r1"),
                points: pts(41)
            })
        ),
        Err(StateError::RefundExceedsRedemption {
            remaining: 40,
            requested: 41
        })
    );
    l.apply(
        "f3",
        EntryKind::Refund(Refund {
            redemption: id("r1"),
            points: pts(40),
        }),
    )
    .unwrap();
    assert_eq!(l.balance("alice"), 100);
    assert!(matches!(
        l.apply(
            "f4",
            EntryKind::Refund(Refund {
                redemption: id("nope"),
                points: pts(1)
            })
        ),
        Err(StateError::UnknownRedemption(_))
    ));
    l.replay_equals_live();
}

#[test]
fn refund_after_lot_expiry_sends_points_to_expired() {
    let mut l = Log::new();
    l.apply("p1", expiry(100)).unwrap();
    l.earn("e1", "alice", 50).unwrap();
    l.redeem("r1", "alice", 50).unwrap();
    l.at(5_000);
    let a = l
        .apply(
            "f1",
            EntryKind::Refund(Refund {
                redemption: id("r1"),
                points: pts(50),
            }),
        )
        .unwrap();
    assert_eq!(a.transfers[0].to, AccountId::Expired);
    assert_eq!(l.balance("alice"), 0);
    l.replay_equals_live();
}

fn tier_policy() -> EntryKind {
    EntryKind::TierPolicy(TierPolicy {
        tiers: vec![
            Tier {
                name: "blue".parse().unwrap(),
                threshold: 0,
            },
            Tier {
                name: "gold".parse().unwrap(),
                threshold: 100,
            },
        ],
        window_ms: DurationMs::new(10_000).unwrap(),
        grace_ms: DurationMs::new(1_000).unwrap(),
    })
}

fn change(member: &str, from: &str, to: &str) -> EntryKind {
    EntryKind::TierChange(TierChange {
        member: m(member),
        from: from.parse().unwrap(),
        to: to.parse().unwrap(),
    })
}

#[test]
fn tier_upgrades_at_once_and_downgrades_after_window_and_grace() {
    let mut l = Log::new();
    l.apply("tp", tier_policy()).unwrap();
    l.earn("e1", "alice", 60).unwrap();
    assert_eq!(l.state.tier_change_due(&m("alice"), t(l.time + 1)), None);
    assert!(matches!(
        l.apply("c0", change("alice", "blue", "gold")),
        Err(StateError::TierNotDue { .. })
    ));
    l.earn("e2", "alice", 40).unwrap();
    let earned = l.time;
    // Redemptions do not reduce qualifying points.
    l.redeem("r1", "alice", 100).unwrap();
    l.apply("c1", change("alice", "blue", "gold")).unwrap();
    assert_eq!(
        l.state.current_tier(&m("alice")),
        Some("gold".parse().unwrap())
    );
    // Still gold during the grace period after e1 leaves the window.
    l.at(earned + 10_000 + 500);
    assert_eq!(l.state.tier_change_due(&m("alice"), t(l.time + 1)), None);
    assert!(matches!(
        l.apply("c2", change("alice", "gold", "blue")),
        Err(StateError::TierNotDue { .. })
    ));
    l.at(earned - 1 + 10_000 + 1_000);
    assert!(l
        .state
        .tier_change_due(&m("alice"), t(l.time + 1))
        .is_some());
    assert!(matches!(
        l.apply("c3", change("alice", "blue", "gold")),
        Err(StateError::TierFromMismatch { .. })
    ));
    l.apply("c4", change("alice", "gold", "blue")).unwrap();
    l.replay_equals_live();
}

#[test]
fn tier_change_without_policy_is_refused() {
    let mut l = Log::new();
    l.earn("e1", "alice", 60).unwrap();
    assert_eq!(
        l.apply("c1", change("alice", "blue", "gold")),
        Err(StateError::NoTierPolicy)
    );
}

fn attest(member: &str, tier: &str, valid_until: Option<u64>) -> EntryKind {
    EntryKind::TierAttestation(TierAttestation {
        member: m(member),
        tier: tier.parse().unwrap(),
        valid_until: valid_until.map(t),
    })
}

#[test]
fn attestation_of_the_held_tier_is_accepted_and_moves_nothing() {
    let mut l = Log::new();
    l.apply("tp", tier_policy()).unwrap();
    l.earn("e1", "alice", 100).unwrap();
    l.earn("e2", "bob", 10).unwrap();
    l.apply("c1", change("alice", "blue", "gold")).unwrap();
    let next = t(l.time + 1);
    let until = l.state.tier_valid_until(&m("alice"), next).unwrap();
    let before = l.state.clone();
    let a = l
        .apply("a1", attest("alice", "gold", Some(until.get())))
        .unwrap();
    assert_eq!(a.transfers, vec![]);
    assert_eq!(a.member, Some(m("alice")));
    assert_eq!(l.state.member(&m("alice")), before.member(&m("alice")));
    assert_eq!(l.state.system_accounts(), before.system_accounts());
    // A shorter claim is true too.
    l.apply("a2", attest("alice", "gold", Some(until.get() - 1)))
        .unwrap();
    // The base tier is held forever: with or without an end.
    l.apply("a3", attest("bob", "blue", None)).unwrap();
    l.apply("a4", attest("bob", "blue", Some(l.time + 100)))
        .unwrap();
    l.state.check_invariants().unwrap();
    l.replay_equals_live();
}

#[test]
fn attestation_is_refused_unless_true_at_its_time() {
    let mut l = Log::new();
    l.earn("e0", "alice", 100).unwrap();
    assert_eq!(
        l.apply("a0", attest("alice", "blue", None)),
        Err(StateError::NoTierPolicy)
    );
    l.apply("tp", tier_policy()).unwrap();
    assert_eq!(
        l.apply("a1", attest("carol", "blue", None)),
        Err(StateError::UnknownMember(m("carol")))
    );
    // alice qualifies for gold but her recorded tier is still blue: both claims are refused.
    assert!(matches!(
        l.apply("a2", attest("alice", "gold", Some(l.time + 100))),
        Err(StateError::AttestationTierMismatch { .. })
    ));
    assert!(matches!(
        l.apply("a3", attest("alice", "blue", None)),
        Err(StateError::AttestationTierChangeDue { .. })
    ));
    l.apply("c1", change("alice", "blue", "gold")).unwrap();
    let until = l
        .state
        .tier_valid_until(&m("alice"), t(l.time + 1))
        .unwrap();
    let e = l
        .apply("a4", attest("alice", "gold", Some(until.get() + 1)))
        .unwrap_err();
    assert_eq!(e.code(), "attestation_too_long");
    assert_eq!(
        l.apply("a5", attest("alice", "gold", None)),
        Err(StateError::AttestationTooLong {
            member: m("alice"),
            tier: "gold".parse().unwrap(),
            valid_until: None,
            held_until: Some(until),
        })
    );
    let now = l.time + 1;
    assert_eq!(
        l.apply("a6", attest("alice", "gold", Some(now))),
        Err(StateError::AttestationValidUntilNotInFuture {
            valid_until: t(now),
            now: t(now),
        })
    );
    // After the grace period the downgrade is due, and gold can no longer be attested.
    l.at(until.get());
    assert!(matches!(
        l.apply("a7", attest("alice", "gold", Some(until.get() + 5))),
        Err(StateError::AttestationTierChangeDue { .. })
    ));
    l.apply("a8", attest("alice", "gold", Some(until.get() - 1)))
        .unwrap_err();
    l.replay_equals_live();
}

#[test]
fn rate_card_cannot_be_backdated() {
    let mut l = Log::new();
    let card = |from: u64| {
        EntryKind::RateCard(RateCard {
            currency: "EUR".parse().unwrap(),
            point_value: "0.01".parse().unwrap(),
            valid_from: t(from),
        })
    };
    assert_eq!(l.apply("rc1", card(10)), Err(StateError::RateCardInPast));
    l.apply("rc2", card(1_000_000)).unwrap();
    assert_eq!(l.state.policies().rate_cards.len(), 1);
}

#[test]
fn balances_cannot_overflow_2_pow_53() {
    let mut l = Log::new();
    l.earn("e1", "alice", MAX_AMOUNT).unwrap();
    assert_eq!(l.earn("e2", "alice", 1), Err(StateError::BalanceOverflow));
}

// ---- Property tests ------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Earn {
        member: usize,
        points: u64,
    },
    Redeem {
        member: usize,
        points: u64,
    },
    Adjust {
        member: usize,
        points: u64,
        credit: bool,
    },
    Hold {
        member: usize,
        points: u64,
        ttl: u64,
    },
    Post {
        hold: usize,
    },
    Void {
        hold: usize,
    },
    Refund {
        redemption: usize,
        points: u64,
    },
    ExpireDue,
    ReleaseDue,
    TierDue {
        member: usize,
    },
    Wait {
        ms: u64,
    },
    ReuseId {
        of: usize,
    },
    Attest {
        member: usize,
        shorten: u64,
        lie: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4usize, 1..500u64).prop_map(|(member, points)| Op::Earn { member, points }),
        3 => (0..4usize, 1..400u64).prop_map(|(member, points)| Op::Redeem { member, points }),
        1 => (0..4usize, 1..200u64, any::<bool>())
            .prop_map(|(member, points, credit)| Op::Adjust { member, points, credit }),
        3 => (0..4usize, 1..300u64, 1..3000u64)
            .prop_map(|(member, points, ttl)| Op::Hold { member, points, ttl }),
        2 => (0..8usize).prop_map(|hold| Op::Post { hold }),
        2 => (0..8usize).prop_map(|hold| Op::Void { hold }),
        2 => (0..8usize, 1..300u64).prop_map(|(redemption, points)| Op::Refund { redemption, points }),
        1 => Just(Op::ExpireDue),
        1 => Just(Op::ReleaseDue),
        1 => (0..4usize).prop_map(|member| Op::TierDue { member }),
        2 => (1..4000u64).prop_map(|ms| Op::Wait { ms }),
        1 => (0..40usize).prop_map(|of| Op::ReuseId { of }),
        2 => (0..4usize, 0..3000u64, 0..3u8)
            .prop_map(|(member, shorten, lie)| Op::Attest { member, shorten, lie }),
    ]
}

const MEMBERS: [&str; 4] = ["m0", "m1", "m2", "m3"];

fn run(ops: &[Op]) -> Log {
    let mut l = Log::new();
    l.apply("policy-expiry", expiry(5_000)).unwrap();
    l.apply("policy-tier", tier_policy()).unwrap();
    let mut holds: Vec<String> = Vec::new();
    let mut redemptions: Vec<String> = Vec::new();
    let mut resolved: BTreeMap<String, u32> = BTreeMap::new();
    for (n, op) in ops.iter().enumerate() {
        let eid = format!("op-{n}");
        match op {
            Op::Earn { member, points } => {
                let _ = l.earn(&eid, MEMBERS[*member], *points);
            }
            Op::Redeem { member, points } => {
                if l.redeem(&eid, MEMBERS[*member], *points).is_ok() {
                    redemptions.push(eid);
                }
            }
            Op::Adjust {
                member,
                points,
                credit,
            } => {
                let _ = l.apply(
                    &eid,
                    EntryKind::Adjust(Adjust {
                        member: m(MEMBERS[*member]),
                        points: pts(*points),
                        direction: if *credit {
                            Direction::Credit
                        } else {
                            Direction::Debit
                        },
                        reason: "test".into(),
                    }),
                );
            }
            Op::Hold {
                member,
                points,
                ttl,
            } => {
                let exp = l.time + 1 + ttl;
                if l.hold(&eid, MEMBERS[*member], *points, exp).is_ok() {
                    holds.push(eid);
                }
            }
            Op::Post { hold } | Op::Void { hold } => {
                if let Some(h) = holds.get(*hold).cloned() {
                    let kind = match op {
                        Op::Post { .. } => EntryKind::Post(Post {
                            hold: id(&h),
                            preimage: None,
                        }),
                        _ => EntryKind::Void(Void { hold: id(&h) }),
                    };
                    if l.apply(&eid, kind).is_ok() {
                        *resolved.entry(h.clone()).or_default() += 1;
                        if matches!(op, Op::Post { .. }) {
                            redemptions.push(h);
                        }
                    }
                }
            }
            Op::Refund { redemption, points } => {
                if let Some(r) = redemptions.get(*redemption) {
                    let _ = l.apply(
                        &eid,
                        EntryKind::Refund(Refund {
                            redemption: id(r),
                            points: pts(*points),
                        }),
                    );
                }
            }
            Op::ExpireDue => {
                for (k, x) in l
                    .state
                    .due_expiries(t(l.time + 1), 4)
                    .into_iter()
                    .enumerate()
                {
                    l.apply(&format!("{eid}-{k}"), EntryKind::Expire(x))
                        .unwrap();
                }
            }
            Op::ReleaseDue => {
                for (k, h) in l
                    .state
                    .due_hold_releases(t(l.time + 1), 4)
                    .into_iter()
                    .enumerate()
                {
                    l.apply(
                        &format!("{eid}-{k}"),
                        EntryKind::Void(Void { hold: h.clone() }),
                    )
                    .unwrap();
                    *resolved.entry(h.to_string()).or_default() += 1;
                }
            }
            Op::TierDue { member } => {
                if let Some(c) = l.state.tier_change_due(&m(MEMBERS[*member]), t(l.time + 1)) {
                    l.apply(&eid, EntryKind::TierChange(c)).unwrap();
                }
            }
            Op::Wait { ms } => l.time += ms,
            Op::Attest {
                member,
                shorten,
                lie,
            } => attest_op(&mut l, &eid, m(MEMBERS[*member]), *shorten, *lie),
            Op::ReuseId { of } => {
                if let Some(e) = l.entries.get(*of).cloned() {
                    let size = l.state.size();
                    assert!(matches!(
                        l.apply(e.id.as_str(), e.kind.clone()),
                        Err(StateError::DuplicateId(..))
                    ));
                    assert_eq!(l.state.size(), size);
                }
            }
        }
        l.state.check_invariants().unwrap();
    }
    assert!(
        resolved.values().all(|n| *n == 1),
        "a hold was resolved twice"
    );
    l
}

/// Attests `member`'s tier at the next entry's time: truthfully (`lie` 0, the end brought
/// forward by `shorten` ms), or with a claim one ms too long or a wrong tier (`lie` 1), or
/// forever (`lie` 2). The state machine accepts exactly the true claims.
fn attest_op(l: &mut Log, eid: &str, member: MemberId, shorten: u64, lie: u8) {
    let now = t(l.time + 1);
    let known = l.state.member(&member).is_some();
    let due = l.state.tier_change_due(&member, now).is_some();
    let tier = l.state.current_tier(&member).unwrap();
    let base = tier.as_str() == "blue";
    let held = l.state.tier_valid_until(&member, now);
    if !base && !due {
        // Holding a tier above the base one with no change due means it lasts past now.
        let h = held.expect("a held non-base tier has a defined end");
        assert!(h > now, "tier {tier} held until {h} at {now}");
    }
    let (tier_claim, until_claim, truthful) = match (lie, held) {
        (0, Some(h)) => (
            tier.clone(),
            Some(t(h.get().saturating_sub(shorten).max(now.get() + 1))),
            true,
        ),
        (0, None) => (tier.clone(), None, true),
        (1, Some(h)) => (tier.clone(), Some(t(h.get() + 1)), false),
        (1, None) => {
            let other = if base { "gold" } else { "blue" };
            (other.parse().unwrap(), None, false)
        }
        (_, Some(_)) => (tier.clone(), None, false),
        (_, None) => (tier.clone(), None, true),
    };
    let r = l.apply(
        eid,
        EntryKind::TierAttestation(TierAttestation {
            member: member.clone(),
            tier: tier_claim,
            valid_until: until_claim,
        }),
    );
    let expect_ok = known && !due && truthful;
    assert_eq!(r.is_ok(), expect_ok, "{member} at {now}: {r:?}");
    if let Ok(a) = r {
        assert!(a.transfers.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    /// Conservation, no negative balance, pending = open holds at every index (checked inside
    /// `run` after every op), and replay and stored records equal the live state at the end.
    #[test]
    fn invariants_hold_and_replay_equals_live_state(ops in prop::collection::vec(op(), 1..120)) {
        let l = run(&ops);
        l.replay_equals_live();
        // Every id in the log is distinct: at most one effect per idempotency id.
        let mut seen = BTreeSet::new();
        for e in &l.entries {
            prop_assert!(seen.insert(e.id.clone()));
        }
        // Replaying any prefix also satisfies every invariant (conservation at every index).
        let mut s = State::new();
        for (i, e) in l.entries.iter().enumerate() {
            s.apply(LogIndex::new(i as u64).unwrap(), e).unwrap();
            s.check_invariants().map_err(|v| TestCaseError::fail(v.to_string()))?;
        }
    }
}

#[test]
fn never_expiring_credits_join_one_lot() {
    let mut l = Log::new();
    for i in 0..50 {
        l.earn(&format!("e{i}"), "alice", 10).unwrap();
    }
    let lots = &l.state.member(&m("alice")).unwrap().lots;
    assert_eq!(lots.len(), 1);
    assert_eq!(lots[0].remaining, 500);
    l.redeem("r1", "alice", 500).unwrap();
    assert!(l.state.member(&m("alice")).unwrap().lots.is_empty());
    l.earn("e-after", "alice", 1).unwrap();
    l.apply(
        "f1",
        EntryKind::Refund(Refund {
            redemption: id("r1"),
            points: pts(100),
        }),
    )
    .unwrap();
    let lots = &l.state.member(&m("alice")).unwrap().lots;
    assert_eq!(lots.len(), 1, "a refund joins the never-expiring lot");
    assert_eq!(lots[0].remaining, 101);
    l.replay_equals_live();
}
