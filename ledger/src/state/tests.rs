//! Unit and property tests of the accounting state machine.

use super::*;
use crate::agreement::{self, AgreementTerms, Direction as AgreementDirection};
use crate::entry::{Counterpart, EntryError, ExpiryPolicy, HexBytes, Tier};
use crate::money::Currency;
use crate::quote::Quote;
use crate::types::DurationMs;
use crate::value::Rounding;
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
                    !self.state.records.has_changes(),
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
                authorisation: None,
            }),
        )
    }

    fn balance(&self, member: &str) -> u64 {
        self.state
            .member(&m(member))
            .unwrap()
            .map_or(0, |s| s.balance)
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

/// The keys of every obligation kept.
fn obligation_keys(s: &State) -> Vec<ObligationKey> {
    s.records
        .all_with_prefix(record_prefix::OBLIGATION)
        .unwrap()
        .iter()
        .map(|(_, v)| records::decode_json::<ObligationState>(v).unwrap().key())
        .collect()
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
    assert_eq!(l.state.account_balance(&AccountId::Issued).unwrap(), -100);
    assert_eq!(l.state.account_balance(&AccountId::Redeemed).unwrap(), 30);
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
    let lots = &l.state.lots(&m("alice"), None, LOTS_PAGE_MAX).unwrap();
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
    let due = l.state.due_expiries(t(1201), 10).unwrap();
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
    assert_eq!(l.state.account_balance(&AccountId::Expired).unwrap(), 50);
    assert!(l.state.due_expiries(t(5000), 10).unwrap().is_empty());
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
    let s = l.state.member(&m("alice")).unwrap().unwrap();
    assert_eq!((s.balance, s.pending), (60, 40));
    l.apply(
        "p1",
        EntryKind::Post(Post {
            hold: id("h1"),
            preimage: None,
        }),
    )
    .unwrap();
    assert_eq!(l.state.member(&m("alice")).unwrap().unwrap().pending, 0);
    assert_eq!(l.state.account_balance(&AccountId::Redeemed).unwrap(), 40);
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
    assert_eq!(
        l.state.due_hold_releases(t(2_001), 10).unwrap(),
        vec![id("h1")]
    );
    l.apply("v1", EntryKind::Void(Void { hold: id("h1") }))
        .unwrap();
    assert!(l.state.due_hold_releases(t(9_999), 10).unwrap().is_empty());
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
            authorisation: None,
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
    assert_eq!(l.state.account_balance(&clearing).unwrap(), 10);
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
    assert_eq!(
        l.state.tier_change_due(&m("alice"), t(l.time + 1)).unwrap(),
        None
    );
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
        l.state.current_tier(&m("alice")).unwrap(),
        Some("gold".parse().unwrap())
    );
    // Still gold during the grace period after e1 leaves the window.
    l.at(earned + 10_000 + 500);
    assert_eq!(
        l.state.tier_change_due(&m("alice"), t(l.time + 1)).unwrap(),
        None
    );
    assert!(matches!(
        l.apply("c2", change("alice", "gold", "blue")),
        Err(StateError::TierNotDue { .. })
    ));
    l.at(earned - 1 + 10_000 + 1_000);
    assert!(l
        .state
        .tier_change_due(&m("alice"), t(l.time + 1))
        .unwrap()
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
    let until = l
        .state
        .tier_valid_until(&m("alice"), next)
        .unwrap()
        .unwrap();
    let before = l.state.clone();
    let a = l
        .apply("a1", attest("alice", "gold", Some(until.get())))
        .unwrap();
    assert_eq!(a.transfers, vec![]);
    assert_eq!(a.member, Some(m("alice")));
    assert_eq!(
        l.state.member(&m("alice")).unwrap(),
        before.member(&m("alice")).unwrap()
    );
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
        .unwrap()
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

fn cur(c: &str) -> Currency {
    c.parse().unwrap()
}

fn card(currency: &str, value: &str, from: u64) -> EntryKind {
    EntryKind::RateCard(RateCard {
        currency: cur(currency),
        point_value: value.parse().unwrap(),
        valid_from: t(from),
    })
}

fn fx(from: &str, to: &str, rate: &str, valid_from: u64) -> EntryKind {
    EntryKind::FxRate(FxRate {
        from: cur(from),
        to: cur(to),
        rate: rate.parse().unwrap(),
        valid_from: t(valid_from),
    })
}

#[test]
fn fx_rate_is_refused_between_one_currency_or_backdated() {
    let mut l = Log::new();
    let e = l.apply("fx1", fx("EUR", "EUR", "1", 5_000)).unwrap_err();
    assert_eq!(
        e,
        StateError::FxSameCurrency {
            currency: cur("EUR")
        }
    );
    assert_eq!(e.code(), "fx_same_currency");
    let e = l.apply("fx2", fx("EUR", "USD", "1.08", 10)).unwrap_err();
    assert_eq!(e, StateError::RateCardInPast);
    assert_eq!(e.code(), "rate_card_in_past");
    // Valid from the entry's own time is not in the past.
    let now = l.time + 1;
    let a = l.apply("fx3", fx("EUR", "USD", "1.08", now)).unwrap();
    assert_eq!(a, Applied::default());
    assert_eq!(
        l.state.policies().fx_rates,
        vec![(LogIndex::new(0).unwrap(), {
            let EntryKind::FxRate(r) = fx("EUR", "USD", "1.08", now) else {
                unreachable!()
            };
            r
        })]
    );
    l.replay_equals_live();
}

#[test]
fn rate_lookups_take_the_latest_valid_from_and_the_later_entry_on_ties() {
    let mut l = Log::new(); // entries at 1001, 1002, ...
    l.apply("rc0", card("EUR", "0.01", 2_000)).unwrap(); // index 0
    l.apply("rc1", card("EUR", "0.02", 5_000)).unwrap(); // index 1
    l.apply("rc2", card("EUR", "0.03", 2_000)).unwrap(); // index 2: ties with rc0, later
    l.apply("rc3", card("USD", "0.04", 3_000)).unwrap(); // index 3, another currency
    l.apply("fx0", fx("EUR", "JPY", "160", 2_000)).unwrap(); // index 4
    l.apply("fx1", fx("EUR", "JPY", "161", 4_000)).unwrap(); // index 5
    l.apply("fx2", fx("JPY", "EUR", "0.006", 1_500)).unwrap(); // index 6, the other direction
    l.apply("fx3", fx("EUR", "JPY", "162", 4_000)).unwrap(); // index 7: ties with fx1, later
    let ix = |i: u64| LogIndex::new(i).unwrap();
    let s = &l.state;
    let card_at = |c: Option<&str>, at: u64| s.rate_card_at(c.map(cur), t(at)).map(|(i, _)| i);
    assert_eq!(card_at(None, 1_999), None);
    assert_eq!(card_at(None, 2_000), Some(ix(2)));
    assert_eq!(card_at(Some("EUR"), 2_999), Some(ix(2)));
    assert_eq!(card_at(None, 3_000), Some(ix(3)));
    assert_eq!(card_at(Some("EUR"), 3_000), Some(ix(2)));
    assert_eq!(card_at(Some("EUR"), 5_000), Some(ix(1)));
    assert_eq!(card_at(Some("USD"), 2_999), None);
    assert_eq!(card_at(Some("USD"), 9_999), Some(ix(3)));
    assert_eq!(card_at(Some("GBP"), 9_999), None);
    assert_eq!(
        s.rate_card_at(Some(cur("EUR")), t(2_500))
            .unwrap()
            .1
            .point_value
            .to_string(),
        "0.03"
    );
    let fx_at = |f: &str, to: &str, at: u64| s.fx_rate_at(cur(f), cur(to), t(at));
    assert_eq!(fx_at("EUR", "JPY", 1_999), None);
    assert_eq!(fx_at("EUR", "JPY", 3_999).map(|(i, _)| i), Some(ix(4)));
    let (i, r) = fx_at("EUR", "JPY", 4_000).unwrap();
    assert_eq!((i, r.rate.to_string()), (ix(7), "162".to_owned()));
    // No inverse is derived, and a pair without a rate has none.
    assert_eq!(fx_at("JPY", "EUR", 1_499), None);
    assert_eq!(fx_at("JPY", "EUR", 9_999).map(|(i, _)| i), Some(ix(6)));
    assert_eq!(fx_at("EUR", "USD", 9_999), None);
    // The lookups on State and on Policies agree.
    assert_eq!(
        s.policies().fx_rate_at(cur("EUR"), cur("JPY"), t(4_000)),
        fx_at("EUR", "JPY", 4_000)
    );
    l.replay_equals_live();
}

#[test]
fn rate_cards_and_fx_rates_together_are_capped() {
    let mut s = State::new();
    let apply = |s: &mut State, n: u64, kind: EntryKind| {
        s.apply(
            LogIndex::new(n).unwrap(),
            &Entry {
                time: t(1 + n),
                id: id(&format!("rate-{n}")),
                kind,
            },
        )
    };
    for n in 0..RATES_MAX as u64 {
        let kind = if n % 2 == 0 {
            card("EUR", "0.01", 10_000)
        } else {
            fx("EUR", "USD", "1.08", 10_000)
        };
        apply(&mut s, n, kind).unwrap();
    }
    assert_eq!(s.policies().rate_count(), RATES_MAX);
    let n = RATES_MAX as u64;
    for kind in [
        card("EUR", "0.01", 10_000),
        fx("EUR", "USD", "1.08", 10_000),
    ] {
        let e = apply(&mut s, n, kind).unwrap_err();
        assert_eq!(e, StateError::TooManyRates { max: RATES_MAX });
        assert_eq!(e.code(), "too_many_rates");
    }
    // Other entries are still accepted.
    apply(
        &mut s,
        n,
        EntryKind::Earn(Earn {
            member: m("alice"),
            points: pts(1),
            qualifying: true,
        }),
    )
    .unwrap();
    s.check_invariants().unwrap();
}

#[test]
fn policies_records_without_fx_rates_still_load() {
    let old = br#"{"expiry":null,"rate_cards":[[0,{"currency":"EUR","point_value":"0.01","valid_from":5}]]}"#;
    let meta = br#"{"size":1,"last_time":2}"#;
    let mut cx = legacy::context(Some(old), []).unwrap();
    let mut records: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let rc = format!(r#"{{"index":0,"intent":"{}"}}"#, "00".repeat(32)).into_bytes();
    for (k, v) in [(&b"p"[..], &old[..]), (&b"i/rc"[..], &rc[..])] {
        for (k, v) in legacy::convert(&mut cx, k, v).unwrap() {
            records.insert(k, v.unwrap());
        }
    }
    for (k, v) in legacy::finish(&cx, meta).unwrap() {
        records.insert(k, v.unwrap());
    }
    let s = State::from_records(records.iter()).unwrap();
    assert!(s.policies().fx_rates.is_empty());
    assert_eq!(s.rate_card_at(None, t(5)).map(|(i, _)| i.get()), Some(0));
    assert_eq!(s.size(), 1);
    assert_eq!(s.id_record(&id("rc")).unwrap().unwrap().index.get(), 0);
    // And a policies record with no FX rate is written as before.
    assert!(!String::from_utf8(records[&b"p"[..]].clone())
        .unwrap()
        .contains("fx_rates"));
}

fn authorise(member: &str, payee: &str, max: u64, expires: u64) -> EntryKind {
    EntryKind::SpendAuthorisation(SpendAuthorisation {
        member: m(member),
        payee: payee.parse().unwrap(),
        max_points: pts(max),
        expires_at: t(expires),
    })
}

fn authorised_hold(member: &str, p: u64, payee: Option<&str>, auth: &str) -> EntryKind {
    EntryKind::Hold(Hold {
        member: m(member),
        points: pts(p),
        // Far off: the property test's statements move the log's time on by days.
        expires_at: t(1_000_000_000_000),
        payee: payee.map(|b| b.parse().unwrap()),
        condition: None,
        authorisation: Some(id(auth)),
    })
}

#[test]
fn spend_authorisation_needs_a_known_member_and_a_future_expiry() {
    let mut l = Log::new();
    let e = l
        .apply("a0", authorise("alice", "brand-b", 10, 50_000))
        .unwrap_err();
    assert_eq!(e, StateError::UnknownMember(m("alice")));
    l.earn("e1", "alice", 100).unwrap();
    let now = l.time + 1;
    let e = l
        .apply("a1", authorise("alice", "brand-b", 10, now))
        .unwrap_err();
    assert_eq!(
        e,
        StateError::AuthorisationExpiryNotInFuture {
            expires_at: t(now),
            now: t(now),
        }
    );
    assert_eq!(e.code(), "authorisation_expiry_not_in_future");
    let a = l
        .apply("a2", authorise("alice", "brand-b", 10, 50_000))
        .unwrap();
    assert_eq!(a.transfers, vec![]);
    assert_eq!(a.member, Some(m("alice")));
    assert_eq!(
        l.state.authorisation(&id("a2")).unwrap(),
        Some(AuthorisationState {
            index: LogIndex::new(1).unwrap(),
            member: m("alice"),
            payee: "brand-b".parse().unwrap(),
            max_points: 10,
            expires_at: t(50_000),
            used_by: None,
        })
    );
    assert_eq!(l.balance("alice"), 100);
    l.replay_equals_live();
}

#[test]
fn a_hold_naming_an_authorisation_is_checked_against_it_and_uses_it_once() {
    let mut l = Log::new();
    l.earn("e1", "alice", 1_000).unwrap();
    l.earn("e2", "bob", 1_000).unwrap();
    l.apply("auth", authorise("alice", "brand-b", 300, 10_000))
        .unwrap();
    let code = |r: Result<Applied, StateError>| r.unwrap_err().code();
    let b = Some("brand-b");
    assert_eq!(
        code(l.apply("h1", authorised_hold("alice", 10, b, "nope"))),
        "unknown_authorisation"
    );
    assert_eq!(
        code(l.apply("h2", authorised_hold("bob", 10, b, "auth"))),
        "authorisation_wrong_member"
    );
    assert_eq!(
        l.apply("h3", authorised_hold("alice", 10, None, "auth")),
        Err(StateError::AuthorisationWrongPayee {
            id: id("auth"),
            authorised: "brand-b".parse().unwrap(),
            payee: None,
        })
    );
    assert_eq!(
        code(l.apply("h4", authorised_hold("alice", 10, Some("brand-c"), "auth"))),
        "authorisation_wrong_payee"
    );
    assert_eq!(
        l.apply("h5", authorised_hold("alice", 301, b, "auth")),
        Err(StateError::AuthorisationExceeded {
            id: id("auth"),
            max_points: 300,
            requested: 301,
        })
    );
    // The hold's own checks come first: its expiry, then the authorisation, then the points.
    let mut past = authorised_hold("alice", 10, b, "nope");
    if let EntryKind::Hold(h) = &mut past {
        h.expires_at = t(10);
    }
    assert_eq!(code(l.apply("h6", past)), "hold_expiry_not_in_future");
    // Exactly the maximum is allowed; the authorisation is then used by that hold.
    let a = l
        .apply("h7", authorised_hold("alice", 300, b, "auth"))
        .unwrap();
    assert_eq!(a.transfers[0].to, AccountId::Held);
    let auth = l.state.authorisation(&id("auth")).unwrap().unwrap();
    assert_eq!(auth.used_by, Some(id("h7")));
    assert_eq!(
        l.state.hold(&id("h7")).unwrap().unwrap().authorisation,
        Some(id("auth"))
    );
    assert_eq!(
        l.apply("h8", authorised_hold("alice", 1, b, "auth")),
        Err(StateError::AuthorisationUsed {
            id: id("auth"),
            used_by: id("h7"),
        })
    );
    // Voiding the hold does not give the authorisation back: it is single use.
    l.apply("v7", EntryKind::Void(Void { hold: id("h7") }))
        .unwrap();
    assert_eq!(
        code(l.apply("h9", authorised_hold("alice", 1, b, "auth"))),
        "authorisation_used"
    );
    // Holds without an authorisation behave as before.
    l.hold("h10", "alice", 5, 10_000).unwrap();
    l.state.check_invariants().unwrap();
    l.replay_equals_live();
}

#[test]
fn an_authorisation_cannot_be_used_from_its_expiry_on() {
    let mut l = Log::new();
    l.earn("e1", "alice", 1_000).unwrap();
    l.apply("auth", authorise("alice", "brand-b", 300, 5_000))
        .unwrap();
    l.apply("auth-2", authorise("alice", "brand-b", 300, 6_000))
        .unwrap();
    l.at(4_998); // the next entry is at 4_999
    l.apply("h1", authorised_hold("alice", 5, Some("brand-b"), "auth"))
        .unwrap();
    l.at(5_999); // the next entry is at 6_000, the expiry of auth-2
    assert_eq!(
        l.apply("h2", authorised_hold("alice", 5, Some("brand-b"), "auth-2")),
        Err(StateError::AuthorisationExpired {
            id: id("auth-2"),
            expires_at: t(6_000),
        })
    );
    // Not enough points is reported after every authorisation check.
    l.apply("auth-3", authorise("alice", "brand-b", 5_000, 90_000))
        .unwrap();
    assert_eq!(
        code_of(l.apply(
            "h3",
            authorised_hold("alice", 2_000, Some("brand-b"), "auth-3")
        )),
        "insufficient_points"
    );
    assert!(l
        .state
        .authorisation(&id("auth-3"))
        .unwrap()
        .unwrap()
        .used_by
        .is_none());
    l.replay_equals_live();
}

fn code_of(r: Result<Applied, StateError>) -> &'static str {
    r.unwrap_err().code()
}

#[test]
fn hold_records_without_an_authorisation_still_load() {
    let old = br#"{"index":3,"member":"alice","points":5,"expires_at":99,"portions":[],"status":{"status":"open"}}"#;
    let mut cx = legacy::Context::default();
    let writes = legacy::convert(&mut cx, b"h/h3", old).unwrap();
    let s = State::from_records(writes.into_iter().map(|(k, v)| (k, v.unwrap())));
    let h = s.unwrap().hold(&id("h3")).unwrap().unwrap();
    assert_eq!(h.authorisation, None);
    assert_eq!(h.status, HoldStatus::Open);
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
    /// The expiry policy from now on: lots that expire after 5 s, or never (a member's lots
    /// then mix both kinds, and a never-expiring lot alone is kept in the member's summary).
    Expiry {
        never: bool,
    },
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
    /// A refund of one side of the obligation of the `hold`-th last redemption; `off` is added
    /// to the right amount, and `reuse` takes an id used before.
    RefundObligation {
        hold: usize,
        points: u64,
        off: i8,
        payable: bool,
        reuse: bool,
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
    /// A rate card (`kind` 0: EUR, 1: USD) or FX rate (`kind` 2..5: one of [`FX_PAIRS`]),
    /// valid `delay` ms after its entry, or backdated by 1 ms.
    Rate {
        kind: usize,
        delay: u64,
        backdated: bool,
    },
    /// A spend authorisation for [`PAYEES`]`[payee]`, expiring `ttl` ms after its entry
    /// (`ttl` 0: refused).
    Authorise {
        member: usize,
        payee: usize,
        max: u64,
        ttl: u64,
    },
    /// A hold naming the `recent`-th newest authorisation (none that old: an unknown id), for
    /// its member and payee, or (`tweak` 1, 2, 3) for another member, another payee or none.
    AuthHold {
        recent: usize,
        points: u64,
        tweak: u8,
    },
    /// The agreement `agr-<agreement>`, its terms changed after signing when `tampered`.
    Agree {
        agreement: usize,
        tampered: bool,
    },
    /// A quote under `agr-<agreement>`, quoted `age` ms before its entry and expiring `ttl` ms
    /// after it (`ttl` 0: refused).
    Quote {
        agreement: usize,
        age: u64,
        ttl: u64,
    },
    /// A hold for `brand-b` without an authorisation, as the brand's own writer may log.
    PartnerHold {
        member: usize,
        points: u64,
    },
    /// An obligation under `agr-<agreement>` for the `hold`-th newest redemption (a posted hold
    /// or a redeem), `brand-a` → `brand-b`, of `amount_minor`: a payable when `payable`, else a
    /// receivable.
    Obligate {
        hold: usize,
        agreement: usize,
        amount_minor: u64,
        payable: bool,
    },
    /// The statement of `agr-<agreement>` for the settlement period of the current time,
    /// logged once the period has ended (the log's time jumps to its end).
    Settle {
        agreement: usize,
    },
}

const PAYEES: [&str; 2] = ["brand-b", "brand-c"];
const FX_PAIRS: [(&str, &str); 3] = [("EUR", "USD"), ("USD", "EUR"), ("EUR", "JPY")];

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
        1 => any::<bool>().prop_map(|never| Op::Expiry { never }),
        1 => Just(Op::ReleaseDue),
        1 => (0..4usize).prop_map(|member| Op::TierDue { member }),
        2 => (1..4000u64).prop_map(|ms| Op::Wait { ms }),
        1 => (0..40usize).prop_map(|of| Op::ReuseId { of }),
        2 => (0..4usize, 0..3000u64, 0..3u8)
            .prop_map(|(member, shorten, lie)| Op::Attest { member, shorten, lie }),
        2 => (0..5usize, 0..3000u64, prop::bool::weighted(0.1))
            .prop_map(|(kind, delay, backdated)| Op::Rate { kind, delay, backdated }),
        3 => (0..4usize, 0..2usize, 1..400u64, prop_oneof![1 => Just(0u64), 9 => 1..3000u64])
            .prop_map(|(member, payee, max, ttl)| Op::Authorise { member, payee, max, ttl }),
        3 => (prop_oneof![4 => 0..2usize, 1 => 2..6usize], 1..300u64, prop_oneof![3 => Just(0u8), 1 => 1..4u8])
            .prop_map(|(recent, points, tweak)| Op::AuthHold { recent, points, tweak }),
        3 => (0..3usize, prop::bool::weighted(0.2))
            .prop_map(|(agreement, tampered)| Op::Agree { agreement, tampered }),
        2 => (0..4usize, 0..500u64, prop_oneof![1 => Just(0u64), 9 => 1..3000u64])
            .prop_map(|(agreement, age, ttl)| Op::Quote { agreement, age, ttl }),
        3 => (0..4usize, 1..300u64).prop_map(|(member, points)| Op::PartnerHold { member, points }),
        4 => (0..4usize, prop_oneof![4 => Just(0usize), 1 => 1..3usize], 1..600_000u64, prop::bool::weighted(0.7))
            .prop_map(|(hold, agreement, amount_minor, payable)| Op::Obligate { hold, agreement, amount_minor, payable }),
        4 => (0..8usize, prop_oneof![3 => 1..150u64, 1 => 1..500u64], prop_oneof![4 => Just(0i8), 1 => -2..3i8], prop::bool::weighted(0.85), prop::bool::weighted(0.1))
            .prop_map(|(hold, points, off, payable, reuse)| Op::RefundObligation { hold, points, off, payable, reuse }),
        1 => (0..3usize).prop_map(|agreement| Op::Settle { agreement }),
    ]
}

const MEMBERS: [&str; 4] = ["m0", "m1", "m2", "m3"];

/// Expires up to four lots that are due.
fn expire_due(l: &mut Log, eid: &str) {
    for (k, x) in l
        .state
        .due_expiries(t(l.time + 1), 4)
        .unwrap()
        .into_iter()
        .enumerate()
    {
        l.apply(&format!("{eid}-{k}"), EntryKind::Expire(x))
            .unwrap();
    }
}

/// The expiry policy from now on: lots that expire after 5 s, or never.
fn set_expiry(l: &mut Log, eid: &str, never: bool) {
    let lifetime = (!never).then(|| DurationMs::new(5_000).unwrap());
    let policy = ExpiryPolicy {
        lot_lifetime_ms: lifetime,
    };
    l.apply(eid, EntryKind::ExpiryPolicy(policy)).unwrap();
}

fn run(ops: &[Op]) -> Log {
    let mut l = Log::new();
    l.apply("policy-expiry", expiry(5_000)).unwrap();
    l.apply("policy-tier", tier_policy()).unwrap();
    let mut holds: Vec<String> = Vec::new();
    let mut redemptions: Vec<String> = Vec::new();
    let mut resolved: BTreeMap<String, u32> = BTreeMap::new();
    let mut rates: Vec<(LogIndex, EntryKind)> = Vec::new();
    let mut auths: Vec<ModelAuth> = Vec::new();
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
            Op::ExpireDue => expire_due(&mut l, &eid),
            Op::ReleaseDue => {
                for (k, h) in l
                    .state
                    .due_hold_releases(t(l.time + 1), 4)
                    .unwrap()
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
                if let Some(c) = l
                    .state
                    .tier_change_due(&m(MEMBERS[*member]), t(l.time + 1))
                    .unwrap()
                {
                    l.apply(&eid, EntryKind::TierChange(c)).unwrap();
                }
            }
            Op::Wait { ms } => l.time += ms,
            Op::Expiry { never } => set_expiry(&mut l, &eid, *never),
            Op::Attest {
                member,
                shorten,
                lie,
            } => attest_op(&mut l, &eid, m(MEMBERS[*member]), *shorten, *lie),
            Op::Rate {
                kind,
                delay,
                backdated,
            } => {
                let now = l.time + 1;
                let from = if *backdated { now - 1 } else { now + delay };
                let entry = match *kind {
                    0 => card("EUR", "0.01", from),
                    1 => card("USD", "0.02", from),
                    k => {
                        let (f, to) = FX_PAIRS[k - 2];
                        fx(f, to, &format!("1.{n}1"), from)
                    }
                };
                let index = LogIndex::new(l.state.size()).unwrap();
                match l.apply(&eid, entry.clone()) {
                    Ok(_) => rates.push((index, entry)),
                    Err(e) => assert!(*backdated && e == StateError::RateCardInPast, "{e}"),
                }
            }
            Op::Authorise {
                member,
                payee,
                max,
                ttl,
            } => {
                let now = l.time + 1;
                let known = l.state.member(&m(MEMBERS[*member])).unwrap().is_some();
                let r = l.apply(
                    &eid,
                    authorise(MEMBERS[*member], PAYEES[*payee], *max, now + ttl),
                );
                assert_eq!(r.is_ok(), known && *ttl > 0, "{r:?}");
                if r.is_ok() {
                    auths.push(ModelAuth {
                        id: eid,
                        member: *member,
                        payee: *payee,
                        max: *max,
                        expires_at: now + ttl,
                        used: false,
                    });
                }
            }
            Op::AuthHold {
                recent,
                points,
                tweak,
            } => {
                let n_auths = auths.len();
                let auth = n_auths
                    .checked_sub(recent + 1)
                    .and_then(|k| auths.get_mut(k));
                let (member, payee) = auth.as_ref().map_or((0, 0), |a| (a.member, a.payee));
                let (member, payee) = match tweak {
                    0 => (member, payee),
                    1 => ((member + 1) % MEMBERS.len(), payee),
                    2 => (member, (payee + 1) % PAYEES.len()),
                    _ => (member, PAYEES.len()),
                };
                auth_hold_op(&mut l, &eid, auth, member, *points, payee, &mut holds);
            }
            Op::Agree {
                agreement,
                tampered,
            } => {
                let agr = format!("agr-{agreement}");
                let mut a = cosign(terms(&agr));
                if *tampered {
                    a.terms.credit_limit_minor += 1;
                }
                let known = l.state.agreement(&id(&agr)).is_some();
                let r = l.apply(&eid, EntryKind::Agreement(a));
                match r {
                    Ok(_) => assert!(!tampered && !known),
                    Err(e) => assert_eq!(
                        e.code(),
                        if *tampered {
                            "agreement_bad_signature"
                        } else {
                            "agreement_exists"
                        }
                    ),
                }
            }
            Op::Quote {
                agreement,
                age,
                ttl,
            } => {
                let now = l.time + 1;
                let agr = format!("agr-{agreement}");
                let known = l.state.agreement(&id(&agr)).is_some();
                let q = quote(&eid, &agr, now.saturating_sub(*age), now + ttl);
                let r = l.apply(&eid, EntryKind::Quote(q.clone()));
                assert_eq!(r.is_ok(), known && *ttl > 0, "{r:?}");
                if r.is_ok() {
                    assert_eq!(
                        l.state.quote(&id(&eid)).unwrap().map(|s| s.quote),
                        Some(q.clone())
                    );
                }
            }
            Op::PartnerHold { member, points } => {
                let h = EntryKind::Hold(Hold {
                    member: m(MEMBERS[*member]),
                    points: pts(*points),
                    expires_at: t(l.time + 10_000),
                    payee: Some(brand("brand-b")),
                    condition: None,
                    authorisation: None,
                });
                if l.apply(&eid, h).is_ok() {
                    holds.push(eid);
                }
            }
            Op::Obligate {
                hold,
                agreement,
                amount_minor,
                payable,
            } => {
                if let Some(h) = redemptions.iter().rev().nth(*hold).cloned() {
                    obligate_op(&mut l, &eid, &h, *agreement, *amount_minor, *payable);
                }
            }
            Op::RefundObligation {
                hold,
                points,
                off,
                payable,
                reuse,
            } => {
                // Mostly a logged obligation's side (`payable` false: the other side).
                let keys: Vec<ObligationKey> = obligation_keys(&l.state);
                if !keys.is_empty() {
                    let k = &keys[*hold % keys.len()];
                    let side = (k.side == ObligationSide::Payable) == *payable;
                    let refund = if *reuse {
                        "rf-first".to_owned()
                    } else {
                        eid.clone()
                    };
                    let h = k.redemption.to_string();
                    refund_op(&mut l, &eid, &h, &refund, *points, *off, side);
                }
            }
            Op::Settle { agreement } => settle_op(&mut l, &eid, *agreement),
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
    check_rate_lookups(&l.state, &rates, l.time);
    l
}

/// Applies an obligation for redemption `h` (the member and points of its hold, if it is one;
/// `brand-a` → `brand-b`) and checks
/// the outcome against spec/protocol.md §4.9 read directly: the payable side needs the hold
/// posted for `brand-b` and room under the credit limit; both sides need a known agreement and
/// no obligation of the side for the redemption yet.
fn obligate_op(l: &mut Log, eid: &str, h: &str, agreement: usize, amount: u64, payable: bool) {
    let agr = id(&format!("agr-{agreement}"));
    let hold = l.state.hold(&id(h)).unwrap();
    let mut q = quote(h, agr.as_str(), 0, 1);
    q.amount_minor = amount;
    if let Some(hs) = &hold {
        q.member = hs.member.clone();
        q.points = pts(hs.points);
    }
    let side = if payable {
        ObligationSide::Payable
    } else {
        ObligationSide::Receivable
    };
    let open = l.state.open_payable(&agr);
    let expected = if l
        .state
        .obligation(side, &brand("brand-a"), &id(h))
        .unwrap()
        .is_some()
    {
        Some("obligation_exists")
    } else if l.state.agreement(&agr).is_none() {
        Some("unknown_agreement")
    } else if !payable {
        None
    } else if hold.is_none() {
        Some("unknown_hold")
    } else if !hold.as_ref().is_some_and(|hs| {
        matches!(hs.status, HoldStatus::Posted(_))
            && hs.payee == Some(brand("brand-b"))
            && l.state
                .redemption(&id(h))
                .unwrap()
                .is_some_and(|r| r.refunded == 0)
    }) {
        Some("obligation_hold_mismatch")
    } else if open + amount as i64 > 1_000_000 {
        Some("credit_limit_exceeded")
    } else {
        None
    };
    let r = l.apply(eid, obligation(side, q.clone()));
    match (&r, expected) {
        (Err(e), Some(code)) => assert_eq!(e.code(), code),
        (Ok(_), None) => {
            let kept = l
                .state
                .obligation(side, &brand("brand-a"), &id(h))
                .unwrap()
                .unwrap();
            assert_eq!(kept.quote, q);
            let added = if payable { amount as i64 } else { 0 };
            assert_eq!(l.state.open_payable(&agr), open + added);
        }
        _ => panic!("obligation: {r:?}, expected {expected:?}"),
    }
    let sum: i64 = l
        .state
        .obligations_of(&agr)
        .unwrap()
        .into_iter()
        .filter(|o| o.side == ObligationSide::Payable)
        .map(|o| l.state.agreement(&agr).map_or(0, |a| o.open_minor(a)))
        .sum();
    assert_eq!(sum, l.state.open_payable(&agr));
    assert!(sum <= 1_000_000);
}

/// Logs the statement of `agr-<agreement>` for the period of the log's current time, at its
/// end, as both brands computed it from the lines, and checks the agreement's line totals:
/// all time unchanged, the period's lines no longer open.
fn settle_op(l: &mut Log, eid: &str, agreement: usize) {
    let agr = id(&format!("agr-{agreement}"));
    let Some(a) = l.state.agreement(&agr).cloned() else {
        return;
    };
    let terms = &a.agreement.terms;
    let k = terms.period_of(t(l.time + 1)).unwrap();
    let period = statement::period_bounds(terms, k).unwrap();
    let Ok(st) = statement::compute(terms, period, &l.state.lines_in(&agr, period).unwrap()) else {
        return;
    };
    let before = l.state.totals(&agr);
    let in_period = read::period_totals(&l.state.records, &agr, k..k + 1, 1, false).unwrap();
    l.at(period.to().get());
    let r = l.apply(eid, signed_statement(&st, ["brand-a", "brand-b"]));
    if a.statements.contains_key(&k) {
        assert_eq!(r.unwrap_err().code(), "statement_exists");
        return;
    }
    r.unwrap();
    let after = l.state.totals(&agr);
    assert_eq!(after.all, before.all);
    let mut open = before.open;
    if let Some((_, p)) = in_period.first() {
        open.remove(p);
    }
    assert_eq!(after.open, open);
}

/// The cumulative refund rule, half-even (the test agreements' rule), computed apart from
/// `value::refund_minor`.
fn model_refund(amount: u64, total: u64, before: u64, points: u64) -> u64 {
    let cumulative = |k: u64| {
        let (n, d) = (u128::from(amount) * u128::from(k), u128::from(total));
        let (q, r) = (n / d, n % d);
        let up = 2 * r > d || (2 * r == d && q % 2 == 1);
        (q + u128::from(up)) as u64
    };
    cumulative(before + points) - cumulative(before)
}

/// Applies an `obligation_refund` of `points` of redemption `h` (refund id `refund`, the right
/// amount plus `off`) and checks the outcome against spec/protocol.md §4.13 read directly: an
/// obligation of the side, a new refund id, no more points than are left, the cumulative
/// amount; on the payable side the points go back to the member.
fn refund_op(l: &mut Log, eid: &str, h: &str, refund: &str, points: u64, off: i8, payable: bool) {
    let side = if payable {
        ObligationSide::Payable
    } else {
        ObligationSide::Receivable
    };
    let o = l.state.obligation(side, &brand("brand-a"), &id(h)).unwrap();
    // The member's balance plus what lapsed to `expired` (points of lots past their expiry).
    let balance = |l: &Log, o: &Option<ObligationState>| {
        let member = o
            .as_ref()
            .and_then(|o| l.state.member(&o.quote.member).unwrap())
            .map_or(0, |m| m.balance);
        member as i128 + l.state.account_balance(&AccountId::Expired).unwrap()
    };
    let before = balance(l, &o);
    let (amount, expected) = match &o {
        None => (1, Some("unknown_obligation")),
        Some(o) => {
            let total = o.quote.points.get();
            let done: u64 = o.refunds.iter().map(|r| r.points).sum();
            let right = if done + points <= total {
                model_refund(o.quote.amount_minor, total, done, points)
            } else {
                0
            };
            let amount = right.saturating_add_signed(i64::from(off));
            let code = if o.refunds.iter().any(|r| r.refund.as_str() == refund) {
                Some("refund_exists")
            } else if done + points > total {
                Some("refund_exceeds_obligation")
            } else if amount != right {
                Some("refund_amount_mismatch")
            } else {
                None
            };
            (amount, code)
        }
    };
    let counterpart = (!payable).then_some(Counterpart {
        index: LogIndex::new(9).unwrap(),
        leaf_hash: HexHash([9; 32]),
        time: t(l.time),
    });
    let r = l.apply(
        eid,
        EntryKind::ObligationRefund(ObligationRefund {
            side,
            payer: brand("brand-a"),
            redemption: id(h),
            refund: id(refund),
            points: pts(points),
            amount_minor: amount,
            counterpart,
        }),
    );
    match (&r, expected) {
        (Err(e), Some(code)) => assert_eq!(e.code(), code, "{e}"),
        (Ok(_), None) => {
            let kept = l
                .state
                .obligation(side, &brand("brand-a"), &id(h))
                .unwrap()
                .unwrap();
            let last = kept.refunds.last().unwrap();
            assert_eq!(
                (last.refund.as_str(), last.points, last.amount_minor),
                (refund, points, amount)
            );
            let gained = balance(l, &o) - before;
            assert_eq!(gained, if payable { points as i128 } else { 0 });
            if payable {
                let r = l.state.redemption(&id(h)).unwrap().unwrap();
                assert_eq!(r.refunded, kept.refunded_points());
            }
        }
        _ => panic!("obligation_refund: {r:?}, expected {expected:?}"),
    }
    for a in 0..3 {
        let agr = id(&format!("agr-{a}"));
        let sum: i64 = l
            .state
            .obligations_of(&agr)
            .unwrap()
            .into_iter()
            .filter(|o| o.side == ObligationSide::Payable)
            .map(|o| l.state.agreement(&agr).map_or(0, |a| o.open_minor(a)))
            .sum();
        assert_eq!(sum, l.state.open_payable(&agr));
    }
}

/// What the test expects of one spend authorisation, kept apart from the state machine.
struct ModelAuth {
    id: String,
    member: usize,
    payee: usize,
    max: u64,
    expires_at: u64,
    used: bool,
}

/// Applies a hold naming `auth` (or an unknown id when `None`) and checks the outcome against
/// the model: the authorisation checks of spec/protocol.md §4.9 decide, in order; when they
/// pass, only `unknown_member` or `insufficient_points` may still refuse; an accepted hold
/// uses the authorisation up.
fn auth_hold_op(
    l: &mut Log,
    eid: &str,
    auth: Option<&mut ModelAuth>,
    member: usize,
    points: u64,
    payee: usize,
    holds: &mut Vec<String>,
) {
    let now = l.time + 1;
    let auth_id = auth
        .as_ref()
        .map_or("no-such-auth".to_owned(), |a| a.id.clone());
    let r = l.apply(
        eid,
        authorised_hold(
            MEMBERS[member],
            points,
            PAYEES.get(payee).copied(),
            &auth_id,
        ),
    );
    let expected = match &auth {
        None => Some("unknown_authorisation"),
        Some(a) if a.member != member => Some("authorisation_wrong_member"),
        Some(a) if a.payee != payee => Some("authorisation_wrong_payee"),
        Some(a) if points > a.max => Some("authorisation_exceeded"),
        Some(a) if now >= a.expires_at => Some("authorisation_expired"),
        Some(a) if a.used => Some("authorisation_used"),
        Some(_) => None,
    };
    match (&r, expected) {
        (Err(e), Some(code)) => assert_eq!(e.code(), code),
        (Err(e), None) => assert!(
            matches!(
                e,
                StateError::UnknownMember(_) | StateError::InsufficientPoints { .. }
            ),
            "{e}"
        ),
        (Ok(_), None) => {
            let a = auth.expect("an accepted hold names a known authorisation");
            a.used = true;
            assert_eq!(
                l.state.authorisation(&id(&a.id)).unwrap().unwrap().used_by,
                Some(id(eid))
            );
            holds.push(eid.to_owned());
        }
        (Ok(_), Some(code)) => panic!("a hold was accepted, expected {code}"),
    }
}

/// Checks [`State::rate_card_at`] and [`State::fx_rate_at`] against a direct reading of
/// spec/protocol.md §4.7 over every accepted rate entry, around every `valid_from`.
fn check_rate_lookups(s: &State, rates: &[(LogIndex, EntryKind)], last: u64) {
    let valid_from = |k: &EntryKind| match k {
        EntryKind::RateCard(c) => c.valid_from.get(),
        EntryKind::FxRate(r) => r.valid_from.get(),
        _ => unreachable!(),
    };
    let mut times = vec![0, last];
    for (_, k) in rates {
        let v = valid_from(k);
        times.extend([v.saturating_sub(1), v, v + 1]);
    }
    // The expected entry: walk in log order, a later entry replacing an earlier one when its
    // valid_from is not smaller.
    let expect = |at: u64, keep: &dyn Fn(&EntryKind) -> bool| {
        let mut best: Option<(u64, LogIndex)> = None;
        for (i, k) in rates {
            let v = valid_from(k);
            if v <= at && keep(k) && best.is_none_or(|(bv, _)| v >= bv) {
                best = Some((v, *i));
            }
        }
        best.map(|(_, i)| i)
    };
    for at in times {
        for c in [None, Some("EUR"), Some("USD"), Some("JPY")] {
            let want = expect(at, &|k| match k {
                EntryKind::RateCard(rc) => c.is_none_or(|c| rc.currency == cur(c)),
                _ => false,
            });
            let got = s.rate_card_at(c.map(cur), t(at)).map(|(i, _)| i);
            assert_eq!(got, want, "rate card {c:?} at {at}");
        }
        for (f, to) in FX_PAIRS.into_iter().chain([("JPY", "EUR")]) {
            let want = expect(at, &|k| match k {
                EntryKind::FxRate(r) => r.from == cur(f) && r.to == cur(to),
                _ => false,
            });
            let got = s.fx_rate_at(cur(f), cur(to), t(at)).map(|(i, _)| i);
            assert_eq!(got, want, "fx {f}->{to} at {at}");
        }
    }
}

/// Attests `member`'s tier at the next entry's time: truthfully (`lie` 0, the end brought
/// forward by `shorten` ms), or with a claim one ms too long or a wrong tier (`lie` 1), or
/// forever (`lie` 2). The state machine accepts exactly the true claims.
fn attest_op(l: &mut Log, eid: &str, member: MemberId, shorten: u64, lie: u8) {
    let now = t(l.time + 1);
    let known = l.state.member(&member).unwrap().is_some();
    let due = l.state.tier_change_due(&member, now).unwrap().is_some();
    let tier = l.state.current_tier(&member).unwrap().unwrap();
    let base = tier.as_str() == "blue";
    let held = l.state.tier_valid_until(&member, now).unwrap();
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

/// Applies `entries`, the log's entries from index `from` on, to `s`.
fn apply_all(s: &mut State, entries: &[Entry], from: usize) {
    for (i, e) in entries.iter().enumerate() {
        s.apply(LogIndex::new((from + i) as u64).unwrap(), e)
            .unwrap();
    }
}

/// Rolls back a savepoint around `entries[at..until]` on `s` (which holds `entries[..at]`)
/// and checks that nothing of them remains; then that a released savepoint keeps them.
fn check_rollback(
    mut s: State,
    entries: &[Entry],
    at: usize,
    until: usize,
) -> Result<(), TestCaseError> {
    let before = s.clone();
    s.savepoint();
    apply_all(&mut s, &entries[at..until], at);
    s.rollback_to_savepoint();
    prop_assert!(s == before, "a rolled back savepoint left a change");
    prop_assert_eq!(s.clone().take_changes(), before.clone().take_changes());
    // The log goes on as if the rolled back entries had never been applied.
    s.savepoint();
    apply_all(&mut s, &entries[at..], at);
    s.release_savepoint();
    let mut full = before;
    apply_all(&mut full, &entries[at..], at);
    prop_assert!(s == full, "a released savepoint lost a change");
    prop_assert_eq!(s.take_changes(), full.take_changes());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, .. ProptestConfig::default() })]

    /// A savepoint rolled back (a linked chain refused, spec/protocol.md §6) leaves the state,
    /// record for record, and the changes it will hand to the store exactly as they were,
    /// whatever entries of `run` were applied since (every type, agreements and statements,
    /// rates and policies included), in memory and over a source with pending writes.
    #[test]
    fn rolling_back_a_savepoint_restores_the_state_record_for_record(
        ops in prop::collection::vec(op(), 1..80),
        cuts in (any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<prop::sample::Index>()),
    ) {
        let l = run(&ops);
        let n = l.entries.len();
        let mut c = [cuts.0.index(n + 1), cuts.1.index(n + 1), cuts.2.index(n + 1)];
        c.sort_unstable();
        let [committed, at, until] = c;
        // In memory: the first `committed` entries drained, the next ones pending.
        let mut s = State::new();
        apply_all(&mut s, &l.entries[..committed], 0);
        s.take_changes();
        apply_all(&mut s, &l.entries[committed..at], committed);
        check_rollback(s, &l.entries, at, until)?;
        // Over a source holding the records of the first `committed` entries.
        let mut base = State::new();
        apply_all(&mut base, &l.entries[..committed], 0);
        let source: records::MemorySource = base.records().unwrap().into_iter().collect();
        let mut s = State::open(Arc::new(source)).unwrap();
        apply_all(&mut s, &l.entries[committed..at], committed);
        check_rollback(s, &l.entries, at, until)?;
    }
}

#[test]
fn never_expiring_credits_join_one_lot() {
    let mut l = Log::new();
    for i in 0..50 {
        l.earn(&format!("e{i}"), "alice", 10).unwrap();
    }
    let lots = &l.state.lots(&m("alice"), None, LOTS_PAGE_MAX).unwrap();
    assert_eq!(lots.len(), 1);
    assert_eq!(lots[0].remaining, 500);
    l.redeem("r1", "alice", 500).unwrap();
    assert!(l
        .state
        .lots(&m("alice"), None, LOTS_PAGE_MAX)
        .unwrap()
        .is_empty());
    l.earn("e-after", "alice", 1).unwrap();
    l.apply(
        "f1",
        EntryKind::Refund(Refund {
            redemption: id("r1"),
            points: pts(100),
        }),
    )
    .unwrap();
    let lots = &l.state.lots(&m("alice"), None, LOTS_PAGE_MAX).unwrap();
    assert_eq!(lots.len(), 1, "a refund joins the never-expiring lot");
    assert_eq!(lots[0].remaining, 101);
    l.replay_equals_live();
}

fn brand(s: &str) -> BrandId {
    s.parse().unwrap()
}

/// The node key of `name`, from a fixed seed.
fn party_key(name: &str) -> (ed25519_dalek::SigningKey, String) {
    let seed: [u8; 32] = Sha256::digest(format!("state tests {name}")).into();
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let signer =
        crate::checkpoint::NoteSigner::new(&format!("loyalty.example/{name}"), key.clone())
            .unwrap();
    (key, signer.verifier_key_string())
}

/// Terms between `brand-a` and `brand-b` in EUR, `brand-a` → `brand-b`, from log time 0.
fn terms(agreement: &str) -> AgreementTerms {
    AgreementTerms {
        agreement: id(agreement),
        brands: [brand("brand-a"), brand("brand-b")],
        directions: vec![AgreementDirection {
            payer: brand("brand-a"),
            payee: brand("brand-b"),
        }],
        settlement_currency: cur("EUR"),
        fx_source: brand("brand-a"),
        fee_bps: 150,
        credit_limit_minor: 1_000_000,
        period_ms: DurationMs::new(86_400_000).unwrap(),
        period_origin: t(0),
        rounding: Rounding::HalfEven,
        valid_from: t(0),
    }
}

/// `terms` signed by both brands.
fn cosign(terms: AgreementTerms) -> SignedAgreement {
    let signatures = terms
        .brands
        .iter()
        .map(|b| {
            let (key, vk) = party_key(b.as_str());
            agreement::sign(&terms, b, &key, &vk)
        })
        .collect();
    SignedAgreement { terms, signatures }
}

fn agreement_entry(agreement: &str) -> EntryKind {
    EntryKind::Agreement(cosign(terms(agreement)))
}

#[test]
fn an_agreement_is_kept_once_under_its_agreement_id() {
    let mut l = Log::new();
    let a = l.apply("e-agr-1", agreement_entry("agr-1")).unwrap();
    assert_eq!(a, Applied::default());
    let kept = l.state.agreement(&id("agr-1")).unwrap();
    assert_eq!(kept.index, LogIndex::new(0).unwrap());
    assert_eq!(kept.agreement, cosign(terms("agr-1")));
    assert!(l.state.agreement(&id("e-agr-1")).is_none());
    // The same agreement under another entry id, or other terms with the same agreement id,
    // are refused: changing terms means a new agreement id.
    assert_eq!(
        l.apply("e-agr-1-again", agreement_entry("agr-1")),
        Err(StateError::AgreementExists {
            agreement: id("agr-1"),
            index: LogIndex::new(0).unwrap(),
        })
    );
    let mut other = terms("agr-1");
    other.fee_bps = 0;
    assert_eq!(
        code_of(l.apply("e-agr-1-other", EntryKind::Agreement(cosign(other)))),
        "agreement_exists"
    );
    l.apply("e-agr-0", agreement_entry("agr-0")).unwrap();
    let ids: Vec<&str> = l.state.agreements().map(|(k, _)| k.as_str()).collect();
    assert_eq!(ids, ["agr-0", "agr-1"]);
    assert_eq!(EntryKind::Agreement(cosign(terms("x"))).member(), None);
    l.state.check_invariants().unwrap();
    l.replay_equals_live();
}

#[test]
fn an_agreement_that_does_not_verify_on_its_own_is_refused_with_its_code() {
    let mut l = Log::new();
    let good = cosign(terms("agr-1"));
    let mut tampered = good.clone();
    tampered.terms.credit_limit_minor += 1;
    let mut half = good.clone();
    half.signatures.pop();
    let mut twice = good.clone();
    twice.signatures.push(twice.signatures[0].clone());
    let mut invalid = terms("agr-1");
    invalid.fee_bps = 10_001;
    let mut foreign = good.clone();
    let (key, vk) = party_key("brand-c");
    foreign.signatures.push(agreement::sign(
        &foreign.terms,
        &brand("brand-c"),
        &key,
        &vk,
    ));
    for (a, code) in [
        (tampered, "agreement_bad_signature"),
        (half, "agreement_missing_signature"),
        (twice, "agreement_duplicate_signature"),
        (cosign(invalid), "agreement_invalid_terms"),
        (foreign, "agreement_not_a_party"),
    ] {
        let e = l
            .apply("e-agr", EntryKind::Agreement(a.clone()))
            .unwrap_err();
        assert_eq!(e.code(), code);
        assert!(matches!(e, StateError::Agreement(_)));
        // Decoding refuses the same body.
        let body = serde_json::to_value(&a).unwrap();
        let refused = EntryKind::from_type_and_body("agreement", body).unwrap_err();
        assert!(
            matches!(&refused, EntryError::Invalid(m) if m.starts_with(code)),
            "{refused}"
        );
    }
    assert_eq!(l.state.size(), 0);
    l.apply("e-agr", EntryKind::Agreement(good)).unwrap();
    l.replay_equals_live();
}

#[test]
fn agreements_are_capped() {
    let mut s = State::new();
    // Filled directly: signing 1024 agreements is slow and tests nothing more.
    let kept = AgreementState {
        index: LogIndex::new(0).unwrap(),
        agreement: cosign(terms("agr-kept")),
        statements: BTreeMap::new(),
    };
    for n in 0..AGREEMENTS_MAX {
        s.agreements.insert(id(&format!("agr-{n}")), kept.clone());
    }
    let e = s
        .apply(
            LogIndex::new(0).unwrap(),
            &Entry {
                time: t(1),
                id: id("e-agr"),
                kind: agreement_entry("agr-new"),
            },
        )
        .unwrap_err();
    assert_eq!(
        e,
        StateError::TooManyAgreements {
            max: AGREEMENTS_MAX
        }
    );
    assert_eq!(e.code(), "too_many_agreements");
    s.agreements.pop_first();
    s.apply(
        LogIndex::new(0).unwrap(),
        &Entry {
            time: t(1),
            id: id("e-agr"),
            kind: agreement_entry("agr-new"),
        },
    )
    .unwrap();
}

#[test]
fn agreement_records_round_trip_and_are_checked_by_the_invariants() {
    let mut l = Log::new();
    l.apply("e-agr-1", agreement_entry("agr-1")).unwrap();
    assert!(l.records.contains_key(&b"ag/agr-1"[..]));
    l.replay_equals_live();
    // A kept agreement whose signatures no longer verify breaks an invariant.
    let mut s = l.state.clone();
    s.agreements
        .get_mut(&id("agr-1"))
        .unwrap()
        .agreement
        .terms
        .fee_bps = 0;
    assert!(s.check_invariants().is_err());
}

/// A quote under `terms(agreement)` for redemption `redemption`, `brand-a` → `brand-b`, quoted
/// at `quoted_at` and live until `expires_at`.
fn quote(redemption: &str, agreement: &str, quoted_at: u64, expires_at: u64) -> Quote {
    Quote {
        redemption: id(redemption),
        agreement: id(agreement),
        payer: brand("brand-a"),
        payee: brand("brand-b"),
        member: m("alice"),
        points: pts(400),
        amount_minor: 493,
        currency: cur("EUR"),
        rate_card_index: 3,
        fx_rate_index: None,
        fee_bps: 150,
        rounding: Rounding::HalfEven,
        quoted_at: t(quoted_at),
        expires_at: t(expires_at),
    }
}

#[test]
fn a_quote_is_kept_under_its_redemption_id_after_it_expires() {
    let mut l = Log::new();
    l.apply("e-agr-1", agreement_entry("agr-1")).unwrap();
    let q = quote("red-1", "agr-1", 1_000, 5_000);
    let a = l.apply("red-1", EntryKind::Quote(q.clone())).unwrap();
    assert_eq!(a, Applied::default());
    assert_eq!(EntryKind::Quote(q.clone()).member(), None);
    let kept = l.state.quote(&id("red-1")).unwrap().unwrap();
    assert_eq!((kept.index, &kept.quote), (LogIndex::new(1).unwrap(), &q));
    assert!(l.records.contains_key(&b"qu/red-1"[..]));
    // Long after it expired, it is still there; a second quote for the redemption is a
    // duplicate id.
    l.at(90_000);
    l.earn("e1", "alice", 10).unwrap();
    assert_eq!(l.state.quote(&id("red-1")).unwrap().unwrap().quote, q);
    assert_eq!(
        code_of(l.apply("red-1", EntryKind::Quote(q))),
        "duplicate_id"
    );
    l.state.check_invariants().unwrap();
    l.replay_equals_live();
}

#[test]
fn a_quote_is_refused_unless_it_matches_its_id_time_and_agreement() {
    let mut l = Log::new();
    let q = |f: &dyn Fn(&mut Quote)| {
        let mut q = quote("red-1", "agr-1", 1_000, 5_000);
        f(&mut q);
        EntryKind::Quote(q)
    };
    assert_eq!(
        l.apply("red-1", q(&|_| {})),
        Err(StateError::UnknownAgreement(id("agr-1")))
    );
    l.apply("e-agr-1", agreement_entry("agr-1")).unwrap();
    assert_eq!(
        l.apply("red-2", q(&|_| {})),
        Err(StateError::QuoteIdMismatch {
            id: id("red-2"),
            redemption: id("red-1"),
        })
    );
    // A quote from after the entry's time, or expiring at it, is not live.
    l.at(1_999); // the next entry is at 2_000
    assert_eq!(
        l.apply("red-1", q(&|q| q.quoted_at = t(2_001))),
        Err(StateError::QuoteExpired {
            quoted_at: t(2_001),
            expires_at: t(5_000),
            now: t(2_000),
        })
    );
    l.at(2_999); // the next entry is at 3_000
    assert_eq!(
        code_of(l.apply("red-1", q(&|q| q.expires_at = t(3_000)))),
        "quote_expired"
    );
    let mut late = terms("agr-late");
    late.valid_from = t(1_001);
    l.apply("e-agr-late", EntryKind::Agreement(cosign(late)))
        .unwrap();
    type Change = Box<dyn Fn(&mut Quote)>;
    let mismatches: Vec<Change> = vec![
        Box::new(|q| std::mem::swap(&mut q.payer, &mut q.payee)),
        Box::new(|q| q.payee = brand("brand-c")),
        Box::new(|q| q.currency = cur("USD")),
        Box::new(|q| q.fee_bps = 0),
        Box::new(|q| q.rounding = Rounding::Up),
        Box::new(|q| q.agreement = id("agr-late")),
    ];
    for (i, f) in mismatches.iter().enumerate() {
        let r = l.apply("red-1", q(f.as_ref()));
        assert!(
            matches!(r, Err(StateError::QuoteAgreementMismatch { .. })),
            "case {i}: {r:?}"
        );
        assert_eq!(code_of(r), "quote_agreement_mismatch");
    }
    assert!(l.state.quote(&id("red-1")).unwrap().is_none());
    // Quoted exactly at the entry's time, expiring just after it: accepted.
    let now = l.time + 1;
    l.apply(
        "red-1",
        q(&|q| {
            q.quoted_at = t(now);
            q.expires_at = t(now + 1);
        }),
    )
    .unwrap();
    l.replay_equals_live();
}

#[test]
fn a_quote_body_is_refused_at_decoding_when_out_of_range() {
    let base = quote("red-1", "agr-1", 1_000, 5_000);
    type Change = Box<dyn Fn(&mut Quote)>;
    let cases: Vec<Change> = vec![
        Box::new(|q| q.amount_minor = 0),
        Box::new(|q| q.amount_minor = MAX_AMOUNT + 1),
        Box::new(|q| q.payee = q.payer.clone()),
        Box::new(|q| q.fee_bps = 10_001),
        Box::new(|q| q.expires_at = q.quoted_at),
    ];
    for (i, f) in cases.iter().enumerate() {
        let mut q = base.clone();
        f(&mut q);
        let body = serde_json::to_value(&q).unwrap();
        assert!(
            matches!(
                EntryKind::from_type_and_body("quote", body),
                Err(EntryError::Invalid(_))
            ),
            "case {i}"
        );
    }
    let body = serde_json::to_value(&base).unwrap();
    assert_eq!(
        EntryKind::from_type_and_body("quote", body).unwrap(),
        EntryKind::Quote(base)
    );
}

/// An `obligation` of `side` for quote `q`; a receivable names a fixed counterpart.
fn obligation(side: ObligationSide, q: Quote) -> EntryKind {
    EntryKind::Obligation(Obligation {
        side,
        quote: q,
        counterpart: (side == ObligationSide::Receivable).then_some(Counterpart {
            index: LogIndex::new(7).unwrap(),
            leaf_hash: HexHash([7; 32]),
            time: LogTime::new(7).unwrap(),
        }),
    })
}

/// A log with agreement `agr-1` and a hold `red-1` of 400 of alice's points for `brand-b`,
/// posted when `post`.
fn log_with_hold(post: bool) -> Log {
    let mut l = Log::new();
    l.apply("e-agr-1", agreement_entry("agr-1")).unwrap();
    l.earn("e1", "alice", 1_000).unwrap();
    l.apply(
        "red-1",
        EntryKind::Hold(Hold {
            member: m("alice"),
            points: pts(400),
            expires_at: t(1_000_000),
            payee: Some(brand("brand-b")),
            condition: None,
            authorisation: None,
        }),
    )
    .unwrap();
    if post {
        l.apply(
            "post-1",
            EntryKind::Post(Post {
                hold: id("red-1"),
                preimage: None,
            }),
        )
        .unwrap();
    }
    l
}

#[test]
fn a_payable_is_kept_for_a_posted_hold_and_counts_towards_the_open_total() {
    let mut l = log_with_hold(true);
    let q = quote("red-1", "agr-1", 1_000, 5_000);
    let before = l.state.clone();
    let a = l
        .apply("obl.red-1", obligation(ObligationSide::Payable, q.clone()))
        .unwrap();
    // No points move: they moved with the post.
    assert_eq!(a, Applied::default());
    assert_eq!(l.state.system_accounts(), before.system_accounts());
    assert_eq!(l.balance("alice"), 600);
    let kept = l
        .state
        .obligation(ObligationSide::Payable, &brand("brand-a"), &id("red-1"))
        .unwrap()
        .unwrap();
    assert_eq!(
        (kept.index, kept.side, &kept.quote, &kept.counterpart),
        (
            LogIndex::new(4).unwrap(),
            ObligationSide::Payable,
            &q,
            &None
        )
    );
    assert!(l
        .state
        .obligation(ObligationSide::Receivable, &brand("brand-a"), &id("red-1"))
        .unwrap()
        .is_none());
    assert_eq!(l.state.open_payable(&id("agr-1")), 493);
    assert_eq!(l.state.open_payable(&id("agr-2")), 0);
    assert_eq!(l.state.obligations_of(&id("agr-1")).unwrap().len(), 1);
    assert_eq!(l.state.obligations_of(&id("agr-2")).unwrap().len(), 0);
    assert!(l.records.contains_key(&b"ob/payable/brand-a/red-1"[..]));
    assert_eq!(
        EntryKind::Obligation(Obligation {
            side: ObligationSide::Payable,
            quote: q.clone(),
            counterpart: None,
        })
        .member(),
        None
    );
    // A second payable for the redemption is refused, under any entry id.
    assert_eq!(
        l.apply("obl.red-1.again", obligation(ObligationSide::Payable, q)),
        Err(StateError::ObligationExists {
            side: ObligationSide::Payable,
            payer: brand("brand-a"),
            redemption: id("red-1"),
            index: LogIndex::new(4).unwrap(),
        })
    );
    l.state.check_invariants().unwrap();
    l.replay_equals_live();
}

#[test]
fn a_payable_is_refused_unless_its_hold_is_posted_and_matches_the_quote() {
    let mut l = log_with_hold(false);
    let q = |f: &dyn Fn(&mut Quote)| {
        let mut q = quote("red-1", "agr-1", 1_000, 5_000);
        f(&mut q);
        obligation(ObligationSide::Payable, q)
    };
    assert_eq!(
        l.apply("obl", q(&|q| q.redemption = id("red-9"))),
        Err(StateError::UnknownHold(id("red-9")))
    );
    assert_eq!(
        l.apply("obl", q(&|_| {})),
        Err(StateError::ObligationHoldMismatch {
            hold: id("red-1"),
            reason: "the hold is not posted",
        })
    );
    l.apply(
        "post-1",
        EntryKind::Post(Post {
            hold: id("red-1"),
            preimage: None,
        }),
    )
    .unwrap();
    type Change = Box<dyn Fn(&mut Quote)>;
    let mismatches: Vec<Change> = vec![
        Box::new(|q| q.points = pts(399)),
        Box::new(|q| q.member = m("bob")),
    ];
    for (i, f) in mismatches.iter().enumerate() {
        let r = l.apply("obl", q(f.as_ref()));
        assert_eq!(code_of(r), "obligation_hold_mismatch", "case {i}");
    }
    // A hold for another payee (or none) does not match a quote for brand-b.
    l.hold("red-2", "alice", 10, 1_000_000).unwrap();
    l.apply(
        "post-2",
        EntryKind::Post(Post {
            hold: id("red-2"),
            preimage: None,
        }),
    )
    .unwrap();
    let r = l.apply(
        "obl",
        q(&|q| {
            q.redemption = id("red-2");
            q.points = pts(10);
        }),
    );
    assert_eq!(
        r,
        Err(StateError::ObligationHoldMismatch {
            hold: id("red-2"),
            reason: "the hold is not for the quote's payee",
        })
    );
    l.apply("obl", q(&|_| {})).unwrap();
    l.replay_equals_live();
}

#[test]
fn an_obligation_is_refused_unless_it_matches_its_agreement() {
    let mut l = log_with_hold(true);
    let q = |f: &dyn Fn(&mut Quote)| {
        let mut q = quote("red-1", "agr-1", 1_000, 5_000);
        f(&mut q);
        q
    };
    for side in [ObligationSide::Payable, ObligationSide::Receivable] {
        assert_eq!(
            l.apply("obl", obligation(side, q(&|q| q.agreement = id("agr-9")))),
            Err(StateError::UnknownAgreement(id("agr-9")))
        );
        type Change = Box<dyn Fn(&mut Quote)>;
        let mismatches: Vec<Change> = vec![
            Box::new(|q| std::mem::swap(&mut q.payer, &mut q.payee)),
            Box::new(|q| q.payee = brand("brand-c")),
            Box::new(|q| q.currency = cur("USD")),
            Box::new(|q| q.fee_bps = 0),
            Box::new(|q| q.rounding = Rounding::Up),
        ];
        for (i, f) in mismatches.iter().enumerate() {
            let r = l.apply("obl", obligation(side, q(f.as_ref())));
            assert!(
                matches!(r, Err(StateError::ObligationAgreementMismatch { .. })),
                "{side} case {i}: {r:?}"
            );
            assert_eq!(code_of(r), "obligation_agreement_mismatch");
        }
    }
    assert_eq!(l.state.obligations_of(&id("agr-1")).unwrap().len(), 0);
    l.replay_equals_live();
}

#[test]
fn payables_are_refused_beyond_the_credit_limit() {
    let mut l = log_with_hold(true);
    let mut q = quote("red-1", "agr-1", 1_000, 5_000);
    q.amount_minor = 999_000;
    l.apply("obl.red-1", obligation(ObligationSide::Payable, q))
        .unwrap();
    let hold_and_post = |l: &mut Log, h: &str| {
        l.apply(
            h,
            EntryKind::Hold(Hold {
                member: m("alice"),
                points: pts(400),
                expires_at: t(1_000_000),
                payee: Some(brand("brand-b")),
                condition: None,
                authorisation: None,
            }),
        )
        .unwrap();
        l.apply(
            &format!("post.{h}"),
            EntryKind::Post(Post {
                hold: id(h),
                preimage: None,
            }),
        )
        .unwrap();
    };
    hold_and_post(&mut l, "red-2");
    let mut q = quote("red-2", "agr-1", 1_000, 5_000);
    q.amount_minor = 1_001;
    assert_eq!(
        l.apply("obl.red-2", obligation(ObligationSide::Payable, q.clone())),
        Err(StateError::CreditLimitExceeded {
            agreement: id("agr-1"),
            open_minor: 999_000,
            amount_minor: 1_001,
            limit_minor: 1_000_000,
        })
    );
    // Receivables do not count towards this log's open payables.
    l.apply(
        "obl.in.red-2",
        obligation(ObligationSide::Receivable, q.clone()),
    )
    .unwrap();
    assert_eq!(l.state.open_payable(&id("agr-1")), 999_000);
    // Exactly up to the limit is allowed.
    q.amount_minor = 1_000;
    l.apply("obl.red-2", obligation(ObligationSide::Payable, q))
        .unwrap();
    assert_eq!(l.state.open_payable(&id("agr-1")), 1_000_000);
    assert_eq!(l.state.obligations_of(&id("agr-1")).unwrap().len(), 3);
    l.state.check_invariants().unwrap();
    l.replay_equals_live();
}

#[test]
fn a_receivable_names_its_counterpart_and_is_kept_once_per_payer_and_redemption() {
    // The payee's log holds the agreement but not the payer's hold.
    let mut l = Log::new();
    l.apply("e-agr-1", agreement_entry("agr-1")).unwrap();
    let q = quote("red-1", "agr-1", 1_000, 5_000);
    let missing = EntryKind::Obligation(Obligation {
        side: ObligationSide::Receivable,
        quote: q.clone(),
        counterpart: None,
    });
    assert_eq!(
        l.apply("obl.red-1", missing.clone()),
        Err(StateError::ObligationCounterpartMissing)
    );
    let unexpected = EntryKind::Obligation(Obligation {
        side: ObligationSide::Payable,
        quote: q.clone(),
        counterpart: Some(Counterpart {
            index: LogIndex::new(7).unwrap(),
            leaf_hash: HexHash([7; 32]),
            time: LogTime::new(7).unwrap(),
        }),
    });
    assert_eq!(
        code_of(l.apply("obl.red-1", unexpected.clone())),
        "obligation_counterpart_unexpected"
    );
    // Decoding refuses both bodies too.
    for (kind, what) in [(missing, "receivable"), (unexpected, "payable")] {
        assert!(
            matches!(
                EntryKind::from_type_and_body("obligation", kind.body_value()),
                Err(EntryError::Invalid(_))
            ),
            "{what}"
        );
    }
    l.apply(
        "obl.red-1",
        obligation(ObligationSide::Receivable, q.clone()),
    )
    .unwrap();
    let kept = l
        .state
        .obligation(ObligationSide::Receivable, &brand("brand-a"), &id("red-1"))
        .unwrap()
        .unwrap();
    assert_eq!(kept.counterpart.as_ref().unwrap().index.get(), 7);
    assert_eq!(l.state.open_payable(&id("agr-1")), 0);
    assert!(l.records.contains_key(&b"ob/receivable/brand-a/red-1"[..]));
    assert_eq!(
        code_of(l.apply("obl.red-1.again", obligation(ObligationSide::Receivable, q))),
        "obligation_exists"
    );
    l.state.check_invariants().unwrap();
    l.replay_equals_live();
}

#[test]
fn obligation_records_are_checked_on_load_and_by_the_invariants() {
    let mut l = log_with_hold(true);
    let q = quote("red-1", "agr-1", 1_000, 5_000);
    l.apply("obl.red-1", obligation(ObligationSide::Payable, q))
        .unwrap();
    l.replay_equals_live();
    // A record under a key that does not name it breaks an invariant (records are read on
    // demand, so loading does not see it).
    let mut records = l.records.clone();
    let v = records.remove(&b"ob/payable/brand-a/red-1"[..]).unwrap();
    records.insert(b"ob/payable/brand-a/red-2".to_vec(), v);
    assert!(State::from_records(records.iter())
        .unwrap()
        .check_invariants()
        .is_err());
    // A derived open total that is not the sum of payables breaks an invariant.
    let mut s = l.state.clone();
    s.open_payables.insert(id("agr-1"), 1);
    assert!(s.check_invariants().is_err());
    // So does a payable whose hold is not posted.
    let mut s = l.state.clone();
    let mut h = s.hold(&id("red-1")).unwrap().unwrap();
    h.status = HoldStatus::Voided(LogIndex::new(3).unwrap());
    s.put_hold(&id("red-1"), &h);
    assert!(s.check_invariants().is_err());
}

fn refund_entry(side: ObligationSide, refund: &str, points: u64, amount: u64) -> EntryKind {
    EntryKind::ObligationRefund(ObligationRefund {
        side,
        payer: brand("brand-a"),
        redemption: id("red-1"),
        refund: id(refund),
        points: pts(points),
        amount_minor: amount,
        counterpart: (side == ObligationSide::Receivable).then_some(Counterpart {
            index: LogIndex::new(8).unwrap(),
            leaf_hash: HexHash([8; 32]),
            time: LogTime::new(2_000).unwrap(),
        }),
    })
}

fn signed_statement(st: &statement::Statement, signers: [&str; 2]) -> EntryKind {
    let signatures = signers
        .iter()
        .zip(["brand-a", "brand-b"])
        .map(|(signer, b)| {
            let (key, vk) = party_key(signer);
            let (_, named) = party_key(b);
            let mut s = statement::sign(st, &brand(b), &key, &vk);
            s.verifier_key = named;
            s
        })
        .collect();
    EntryKind::Statement(SignedStatement {
        statement: st.clone(),
        signatures,
    })
}

#[test]
fn refunds_of_a_partner_redemption_go_through_the_obligation() {
    let mut l = log_with_hold(true);
    let q = quote("red-1", "agr-1", 1_000, 5_000);
    l.apply("obl.red-1", obligation(ObligationSide::Payable, q))
        .unwrap();
    let alice = |l: &Log| l.state.member(&m("alice")).unwrap().unwrap().balance;
    assert_eq!(alice(&l), 600);
    // A plain refund would return the points and leave the partner owed: refused.
    let plain = EntryKind::Refund(Refund {
        redemption: id("red-1"),
        points: pts(10),
    });
    assert_eq!(code_of(l.apply("plain", plain)), "refund_needs_partner");
    // 100 of 400 points of 493 minor units: 123.25, half-even 123.
    let wrong = refund_entry(ObligationSide::Payable, "rf-1", 100, 124);
    assert_eq!(code_of(l.apply("rf.1", wrong)), "refund_amount_mismatch");
    l.apply(
        "rf.1",
        refund_entry(ObligationSide::Payable, "rf-1", 100, 123),
    )
    .unwrap();
    assert_eq!(alice(&l), 700);
    assert_eq!(l.state.open_payable(&id("agr-1")), 370);
    assert_eq!(
        code_of(l.apply("rf.1b", refund_entry(ObligationSide::Payable, "rf-1", 1, 1))),
        "refund_exists"
    );
    assert_eq!(
        code_of(l.apply(
            "rf.2",
            refund_entry(ObligationSide::Payable, "rf-2", 301, 371)
        )),
        "refund_exceeds_obligation"
    );
    // The rest: cumulative 493 − 123.
    l.apply(
        "rf.2",
        refund_entry(ObligationSide::Payable, "rf-2", 300, 370),
    )
    .unwrap();
    assert_eq!(alice(&l), 1_000);
    assert_eq!(l.state.open_payable(&id("agr-1")), 0);
    assert_eq!(
        code_of(l.apply("rf.3", refund_entry(ObligationSide::Payable, "rf-3", 1, 0))),
        "refund_exceeds_obligation"
    );
    assert_eq!(
        code_of(l.apply(
            "rf.r",
            refund_entry(ObligationSide::Receivable, "rf-1", 1, 1)
        )),
        "unknown_obligation"
    );
    l.state.check_invariants().unwrap();
    l.replay_equals_live();
}

#[test]
fn statements_are_cosigned_checked_against_the_own_lines_and_settle() {
    let mut l = log_with_hold(true);
    let q = quote("red-1", "agr-1", 1_000, 5_000);
    l.apply("obl.red-1", obligation(ObligationSide::Payable, q))
        .unwrap();
    l.apply(
        "rf.1",
        refund_entry(ObligationSide::Payable, "rf-1", 100, 123),
    )
    .unwrap();
    let agr = id("agr-1");
    assert_eq!(l.state.open_payable(&agr), 370);
    let terms = l.state.agreement(&agr).unwrap().agreement.terms.clone();
    let day = statement::period_bounds(&terms, 0).unwrap();
    let st = statement::compute(&terms, day, &l.state.lines_in(&agr, day).unwrap()).unwrap();
    assert_eq!(
        (
            st.gross[0].obligations_minor,
            st.gross[0].refunds_minor,
            st.net.amount_minor,
            st.lines
        ),
        (493, 123, 370, 2)
    );
    let good = signed_statement(&st, ["brand-a", "brand-b"]);
    // Not before the period ended.
    assert_eq!(
        code_of(l.apply("st.early", good.clone())),
        "statement_period_invalid"
    );
    l.at(day.to().get());
    // Only the agreement's keys, one signature each.
    let forged = signed_statement(&st, ["brand-a", "brand-x"]);
    assert_eq!(
        code_of(l.apply("st.forged", forged)),
        "statement_bad_signature"
    );
    // Not another span than a settlement period.
    let mut shifted = st.clone();
    shifted.period = statement::Period::new(t(1), t(day.to().get() - 1)).unwrap();
    let shifted = signed_statement(&shifted, ["brand-a", "brand-b"]);
    assert_eq!(
        code_of(l.apply("st.shifted", shifted)),
        "statement_period_invalid"
    );
    // Not other totals than this log's own lines give.
    let mut more = st.clone();
    more.net.amount_minor += 1;
    more.gross[0].total_minor += 1;
    more.gross[0].obligations_minor += 1;
    let more = signed_statement(&more, ["brand-a", "brand-b"]);
    assert_eq!(code_of(l.apply("st.more", more)), "statement_mismatch");
    let size = l.state.size();
    l.apply("st.0", good.clone()).unwrap();
    assert_eq!(l.state.size(), size + 1);
    assert_eq!(l.state.open_payable(&agr), 0);
    assert_eq!(
        l.state
            .agreement(&agr)
            .unwrap()
            .statements
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        vec![0]
    );
    assert_eq!(code_of(l.apply("st.again", good)), "statement_exists");
    // A refund after the settled day is open again, and negative: the payee owes it back.
    l.apply(
        "rf.2",
        refund_entry(ObligationSide::Payable, "rf-2", 300, 370),
    )
    .unwrap();
    assert_eq!(l.state.open_payable(&agr), -370);
    l.state.check_invariants().unwrap();
    l.replay_equals_live();
}

/// The line totals of `agr-1`'s period `k` (zero without lines).
fn period_of_agr1(s: &State, k: u64) -> LineTotals {
    read::period_totals(&s.records, &id("agr-1"), k..k + 1, 10, false)
        .unwrap()
        .first()
        .map_or_else(LineTotals::default, |(_, t)| *t)
}

fn gross(obligations: u64, refunds: u64, lines: u64) -> GrossTotals {
    GrossTotals {
        obligations_minor: obligations,
        refunds_minor: refunds,
        lines,
    }
}

#[test]
fn line_totals_follow_obligations_refunds_and_statements() {
    let mut l = log_with_hold(true);
    let agr = id("agr-1");
    assert_eq!(l.state.totals(&agr), AgreementTotals::default());
    l.apply(
        "obl.red-1",
        obligation(
            ObligationSide::Payable,
            quote("red-1", "agr-1", 1_000, 5_000),
        ),
    )
    .unwrap();
    l.apply(
        "rf.1",
        refund_entry(ObligationSide::Payable, "rf-1", 100, 123),
    )
    .unwrap();
    let day0 = LineTotals {
        gross: [gross(493, 123, 2), GrossTotals::default()],
    };
    assert_eq!(
        l.state.totals(&agr),
        AgreementTotals {
            all: day0,
            open: day0
        }
    );
    assert_eq!(period_of_agr1(&l.state, 0), day0);
    let terms = l.state.agreement(&agr).unwrap().agreement.terms.clone();
    assert_eq!(day0.owes_minor(&terms, &brand("brand-a")), 370);
    assert_eq!(day0.owed_minor(&terms, &brand("brand-b")), 370);
    assert_eq!(day0.position_minor(&terms, &brand("brand-a")), -370);
    assert_eq!(day0.position_minor(&terms, &brand("brand-x")), 0);
    // The statement of day 0 takes its lines out of the open totals.
    let day = statement::period_bounds(&terms, 0).unwrap();
    let st = statement::compute(&terms, day, &l.state.lines_in(&agr, day).unwrap()).unwrap();
    l.at(day.to().get());
    l.apply("st.0", signed_statement(&st, ["brand-a", "brand-b"]))
        .unwrap();
    assert_eq!(l.state.totals(&agr).open, LineTotals::default());
    assert_eq!(l.state.totals(&agr).all, day0);
    // A refund on day 1 is open; a receivable whose payer logged it on (settled) day 0 is
    // not, though it counts all time and in day 0's totals.
    l.apply(
        "rf.2",
        refund_entry(ObligationSide::Payable, "rf-2", 300, 370),
    )
    .unwrap();
    l.apply(
        "obl.red-1.r",
        obligation(
            ObligationSide::Receivable,
            quote("red-1", "agr-1", 1_000, 5_000),
        ),
    )
    .unwrap();
    let t = l.state.totals(&agr);
    assert_eq!(t.all.gross[0], gross(986, 493, 4));
    assert_eq!(t.open.gross[0], gross(0, 370, 1));
    assert_eq!(period_of_agr1(&l.state, 0).gross[0], gross(986, 123, 3));
    assert_eq!(period_of_agr1(&l.state, 1).gross[0], gross(0, 370, 1));
    // Newest period first, bounded by the limit.
    let newest = read::period_totals(&l.state.records, &agr, 0..u64::MAX, 1, true).unwrap();
    assert_eq!(newest.iter().map(|(k, _)| *k).collect::<Vec<_>>(), vec![1]);
    l.state.check_invariants().unwrap();
    l.replay_equals_live();
    // Totals that differ from the lines break an invariant, resident or stored.
    let mut s = l.state.clone();
    s.totals.get_mut(&agr).unwrap().open.gross[0].lines += 1;
    assert!(s.check_invariants().is_err());
    let mut s = l.state.clone();
    s.write(records::period_totals_key(&agr, 1), &day0);
    assert!(s.check_invariants().is_err());
    let mut s = l.state.clone();
    s.records.delete(records::period_totals_key(&agr, 0));
    assert!(s.check_invariants().is_err());
    // The conversion of a store of the previous release derives the same totals from the
    // obligations (the records it writes over the current ones change nothing).
    let mut old = l.records.clone();
    old.retain(|k, _| {
        !k.starts_with(record_prefix::TOTALS) && !k.starts_with(record_prefix::PERIOD_TOTALS)
    });
    let policies = old.get(record_prefix::POLICIES).cloned();
    let agreements: Vec<(Vec<u8>, Vec<u8>)> = old
        .range(record_prefix::AGREEMENT.to_vec()..records::prefix_end(record_prefix::AGREEMENT))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut cx = legacy::context(
        policies.as_deref(),
        agreements.iter().map(|(k, v)| (&k[..], &v[..])),
    )
    .unwrap();
    let mut converted = old.clone();
    for (k, v) in &old {
        for (k, v) in legacy::convert(&mut cx, k, v).unwrap() {
            converted.insert(k, v.unwrap());
        }
    }
    let meta = old[record_prefix::META].clone();
    for (k, v) in legacy::finish(&cx, &meta).unwrap() {
        converted.insert(k, v.unwrap());
    }
    assert_eq!(converted, l.records);
}

#[test]
fn latest_lines_page_newest_first_with_a_cursor_whatever_their_number() {
    let mut l = Log::new();
    l.apply("e-agr-1", agreement_entry("agr-1")).unwrap();
    // Receivables need no hold: many lines, cheaply.
    let n = read::LINES_PAGE_MAX + 120;
    for i in 0..n {
        let mut q = quote(&format!("red-{i}"), "agr-1", 1_000, 5_000);
        q.amount_minor = i as u64 + 1;
        l.apply(
            &format!("obl-{i}"),
            obligation(ObligationSide::Receivable, q),
        )
        .unwrap();
    }
    let agr = id("agr-1");
    let totals = l.state.totals(&agr);
    assert_eq!(totals.all.lines(), n as u64);
    assert_eq!(totals.all, totals.open);
    assert_eq!(
        totals.all.gross[0].obligations_minor,
        (n * (n + 1) / 2) as u64
    );
    // Every receivable names the payer's time 7: one period, one index order.
    let want: Vec<u64> = (0..n as u64).map(|i| i + 1).rev().collect();
    let stored: Arc<dyn RecordSource> = Arc::new(l.records.clone());
    // Read from the records in memory, from a store, and from a store with pending writes
    // on top (the newest half not yet committed).
    let mut half = l.records.clone();
    let mut pending = Vec::new();
    for (k, v) in l
        .records
        .range(records::lines_from(&agr, 0)..records::lines_end(&agr))
    {
        if records::parse_line_key(k).unwrap().1.get() > (n / 2) as u64 {
            pending.push((k.clone(), v.clone()));
        }
    }
    for (k, _) in &pending {
        half.remove(k);
    }
    let mut over = Records::over(Arc::new(half), 0);
    for (k, v) in pending {
        over.put(k, v);
    }
    let sources: [&dyn RecordSource; 3] = [&l.state.records, stored.as_ref(), &over];
    for src in sources {
        for page_size in [50, 7, read::LINES_PAGE_MAX] {
            let mut got = Vec::new();
            let mut before = None;
            let mut pages = 0;
            loop {
                let page = read::latest_lines(src, &agr, before, page_size).unwrap();
                assert!(page.len() <= page_size);
                pages += 1;
                got.extend(page.iter().map(|x| x.index.get()));
                match page.last() {
                    Some(x) if page.len() == page_size => before = Some((x.time, x.index)),
                    _ => break,
                }
            }
            assert!(pages >= n / page_size);
            // Line i is entry i + 1.
            assert_eq!(got, want, "page size {page_size}");
        }
        // A page never exceeds its maximum.
        let page = read::latest_lines(src, &agr, None, usize::MAX).unwrap();
        assert_eq!(page.len(), read::LINES_PAGE_MAX);
    }
    assert_eq!(
        read::parse_line_cursor(&read::format_line_cursor((t(7), LogIndex::new(3).unwrap()))),
        Some((t(7), LogIndex::new(3).unwrap()))
    );
    for bad in ["", "7", "x.1", "7.", "7.-1"] {
        assert_eq!(read::parse_line_cursor(bad), None, "{bad}");
    }
    l.state.check_invariants().unwrap();
    l.replay_equals_live();
}

/// spec/protocol.md §4.1: a system account stays within ±(2^53 − 1); an entry that would take
/// one past it is refused with `balance_overflow` and changes nothing.
#[test]
fn system_accounts_stay_within_the_json_integer_range() {
    let mut l = Log::new();
    l.apply("p1", expiry(1_000)).unwrap();
    l.earn("e1", "alice", MAX_AMOUNT).unwrap(); // lot 1
    assert_eq!(
        l.state.account_balance(&AccountId::Issued).unwrap(),
        -(MAX_AMOUNT as i128)
    );
    // `issued` is at its bound: one more earned point is refused.
    let e = l.earn("e2", "bob", 1).unwrap_err();
    assert_eq!(e.code(), "balance_overflow");
    // Points from another account still come in.
    l.apply(
        "adj1",
        EntryKind::Adjust(Adjust {
            member: m("bob"),
            points: pts(1),
            direction: Direction::Credit,
            reason: "test".into(),
        }),
    )
    .unwrap(); // lot 2 (the refused earn took no index)
    l.at(10_000);
    l.apply(
        "x1",
        EntryKind::Expire(Expire {
            member: m("alice"),
            lot: LogIndex::new(1).unwrap(),
            points: pts(MAX_AMOUNT),
        }),
    )
    .unwrap();
    assert_eq!(
        l.state.account_balance(&AccountId::Expired).unwrap(),
        MAX_AMOUNT as i128
    );
    // `expired` is at its bound: bob's lapsed point cannot go there.
    let e = l
        .apply(
            "x2",
            EntryKind::Expire(Expire {
                member: m("bob"),
                lot: LogIndex::new(2).unwrap(),
                points: pts(1),
            }),
        )
        .unwrap_err();
    assert_eq!(e.code(), "balance_overflow");
    l.state.check_invariants().unwrap();
    l.replay_equals_live();
}

#[test]
fn pruning_qualifying_earnings_moves_the_members_oldest_kept_time() {
    // Without a tier policy a member keeps the newest QUALIFYING_EVENTS_MAX earnings; the
    // member record names the oldest kept one, where the next prune and every read start.
    let mut s = State::new();
    let n = tier::QUALIFYING_EVENTS_MAX as u64 + 3;
    for i in 0..n {
        let e = Entry {
            time: t(1_000 + i),
            id: id(&format!("e{i}")),
            kind: EntryKind::Earn(Earn {
                member: m("alice"),
                points: pts(1),
                qualifying: true,
            }),
        };
        s.apply(LogIndex::new(i).unwrap(), &e).unwrap();
        let summary = s.member(&m("alice")).unwrap().unwrap();
        let kept = s.qualifying(&m("alice")).unwrap();
        assert_eq!(summary.qualifying, kept.len() as u64);
        assert_eq!(
            summary.qualifying_from_ms,
            kept[0].0.get(),
            "after earn {i}"
        );
    }
    let summary = s.member(&m("alice")).unwrap().unwrap();
    assert_eq!(summary.qualifying, tier::QUALIFYING_EVENTS_MAX as u64);
    assert_eq!(summary.qualifying_from_ms, 1_003);
}

#[test]
fn qualifying_earnings_leaving_the_window_move_the_oldest_kept_time() {
    let mut l = Log::new();
    l.apply("tp", tier_policy()).unwrap();
    l.earn("e1", "alice", 10).unwrap();
    let first = l.time;
    l.earn("e2", "alice", 10).unwrap();
    let second = l.time;
    let summary = l.state.member(&m("alice")).unwrap().unwrap();
    assert_eq!(summary.qualifying_from_ms, first);
    // Past the window and grace of e1 (10 s + 1 s), an earn prunes it: e2 is the oldest kept.
    l.at(first + 11_000 - 1);
    l.earn("e3", "alice", 10).unwrap();
    let summary = l.state.member(&m("alice")).unwrap().unwrap();
    assert_eq!(summary.qualifying, 2);
    assert_eq!(summary.qualifying_from_ms, second);
    // Past both, only the new one is kept.
    l.at(l.time + 12_000);
    l.earn("e4", "alice", 10).unwrap();
    let summary = l.state.member(&m("alice")).unwrap().unwrap();
    assert_eq!(summary.qualifying, 1);
    assert_eq!(summary.qualifying_from_ms, l.time);
    l.replay_equals_live();
}

#[test]
fn a_member_record_without_its_oldest_kept_time_still_decodes_and_prunes() {
    // A member record written before `qualifying_from_ms` existed ends after `tier_due`: it
    // decodes with 0, reads start at the member's first key, and the next prune sets it.
    let summary = MemberState {
        balance: 7,
        qualifying: 1,
        qualifying_from_ms: 0,
        ..MemberState::default()
    };
    let old = records::encode(&summary);
    assert_eq!(MemberState::decode(&old).unwrap(), summary);
    let new = summary.encode();
    assert_ne!(old, new);
    assert_eq!(MemberState::decode(&new).unwrap(), summary);
    let mut bad = new.clone();
    bad.push(0);
    assert!(
        MemberState::decode(&bad).is_err(),
        "trailing bytes are refused"
    );

    let mut l = Log::new();
    l.apply("tp", tier_policy()).unwrap();
    l.earn("e1", "alice", 10).unwrap();
    let first = l.time;
    let key = records::named(record_prefix::MEMBER, "alice");
    let mut summary = l.state.member(&m("alice")).unwrap().unwrap();
    summary.qualifying_from_ms = 0;
    // Such a record has its lot under its own key (no `open_lot_inline` either).
    let lot = summary.open_lot.unwrap();
    l.records.insert(
        records::lot_key(&m("alice"), None, lot),
        records::encode(&summary.balance),
    );
    l.records.insert(key, records::encode(&summary));
    let mut loaded = State::from_records(l.records.iter()).expect("records load");
    assert_eq!(
        loaded.qualifying(&m("alice")).unwrap(),
        vec![(t(first), 10)]
    );
    let e = Entry {
        time: t(first + 11_000),
        id: id("e2"),
        kind: EntryKind::Earn(Earn {
            member: m("alice"),
            points: pts(10),
            qualifying: true,
        }),
    };
    loaded
        .apply(LogIndex::new(loaded.size()).unwrap(), &e)
        .unwrap();
    let summary = loaded.member(&m("alice")).unwrap().unwrap();
    assert_eq!(
        (summary.qualifying, summary.qualifying_from_ms),
        (1, first + 11_000)
    );
}

/// A record source the test commits to, as a store would; it remembers the keys read ahead
/// together (`get_many`).
#[derive(Default)]
struct CommittingSource(
    std::sync::Mutex<records::MemorySource>,
    std::sync::Mutex<Vec<Vec<u8>>>,
);

impl CommittingSource {
    fn commit(&self, changes: Vec<(Vec<u8>, Option<Vec<u8>>)>) {
        let mut map = self.0.lock().unwrap();
        for (k, v) in changes {
            match v {
                Some(v) => map.insert(k, v),
                None => map.remove(&k),
            };
        }
    }
}

impl RecordSource for CommittingSource {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        RecordSource::get(&*self.0.lock().unwrap(), key)
    }
    fn range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<records::KeyValues, String> {
        RecordSource::range(&*self.0.lock().unwrap(), start, end, limit)
    }
    fn range_rev(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<records::KeyValues, String> {
        RecordSource::range_rev(&*self.0.lock().unwrap(), start, end, limit)
    }
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, String> {
        self.1.lock().unwrap().extend(keys.iter().cloned());
        keys.iter().map(|k| self.get(k)).collect()
    }
}

fn earn_entry(i: u64, id_: &str, member: &str, points: u64) -> Entry {
    Entry {
        time: LogTime::new(1_000 + i).unwrap(),
        id: id(id_),
        kind: EntryKind::Earn(Earn {
            member: m(member),
            points: pts(points),
            qualifying: true,
        }),
    }
}

#[test]
fn an_id_read_ahead_as_unused_is_found_once_it_is_used() {
    // The read-ahead remembers that the id is unused; once the entry that uses it is applied
    // (pending) and then committed, a second entry with the id is still a duplicate.
    let source = Arc::new(CommittingSource::default());
    let mut s = State::open_cached(source.clone(), 1 << 20).unwrap();
    let first = earn_entry(0, "e1", "alice", 10);
    s.prefetch([(&first.id, &first.kind)]).unwrap();
    s.apply(LogIndex::new(0).unwrap(), &first).unwrap();
    let again = earn_entry(1, "e1", "alice", 10);
    s.prefetch([(&again.id, &again.kind)]).unwrap();
    assert!(matches!(
        s.apply(LogIndex::new(1).unwrap(), &again),
        Err(StateError::DuplicateId(..))
    ));
    source.commit(s.take_changes());
    s.prefetch([(&again.id, &again.kind)]).unwrap();
    assert!(matches!(
        s.apply(LogIndex::new(1).unwrap(), &again),
        Err(StateError::DuplicateId(..))
    ));
    // A member read ahead as absent, then credited, keeps the credit.
    let bob = earn_entry(1, "e2", "bob", 5);
    s.prefetch([(&bob.id, &bob.kind)]).unwrap();
    s.apply(LogIndex::new(1).unwrap(), &bob).unwrap();
    source.commit(s.take_changes());
    let bob2 = earn_entry(2, "e3", "bob", 7);
    s.prefetch([(&bob2.id, &bob2.kind)]).unwrap();
    s.apply(LogIndex::new(2).unwrap(), &bob2).unwrap();
    assert_eq!(s.member(&m("bob")).unwrap().unwrap().balance, 12);
}

#[test]
fn the_record_cache_stays_within_its_budget_and_follows_every_write() {
    let budget = 4096;
    let source = Arc::new(CommittingSource::default());
    let mut s = State::open_cached(source.clone(), budget).unwrap();
    let mut memory = State::new();
    for i in 0..2_000u64 {
        let e = earn_entry(i, &format!("e{i}"), &format!("m{}", i % 97), 1 + i % 13);
        s.prefetch([(&e.id, &e.kind)]).unwrap();
        let index = LogIndex::new(i).unwrap();
        assert_eq!(s.apply(index, &e), memory.apply(index, &e));
        if i % 7 == 6 {
            source.commit(s.take_changes());
            memory.clear_changes();
            let Records::Source { cache, .. } = &*s.records else {
                panic!("a state over a source")
            };
            assert!(cache.bytes() <= budget, "{} bytes cached", cache.bytes());
        }
    }
    source.commit(s.take_changes());
    assert_eq!(s.records().unwrap(), memory.records().unwrap());
    assert!(s == memory);
}

#[test]
fn an_earning_into_the_only_lot_reads_no_lot_and_one_into_two_lots_reads_the_open_one() {
    // The read-ahead skips a lot whose points the member's balance already says (its only
    // lot); with a second lot the open lot is read. Either way the state is the one replayed
    // in memory, record for record.
    let source = Arc::new(CommittingSource::default());
    let mut s = State::open_cached(source.clone(), 0).unwrap();
    let mut memory = State::new();
    let mut lot_reads = Vec::new();
    let mut step = |i: u64, kind: EntryKind| {
        let e = Entry {
            time: LogTime::new(1_000 + i).unwrap(),
            id: id(&format!("e{i}")),
            kind,
        };
        source.1.lock().unwrap().clear();
        s.prefetch([(&e.id, &e.kind)]).unwrap();
        let index = LogIndex::new(i).unwrap();
        assert_eq!(s.apply(index, &e), memory.apply(index, &e));
        source.commit(s.take_changes());
        memory.clear_changes();
        let lots = source
            .1
            .lock()
            .unwrap()
            .iter()
            .filter(|k| k.starts_with(record_prefix::LOT))
            .count();
        lot_reads.push(lots);
        assert_eq!(s.records().unwrap(), memory.records().unwrap());
    };
    let earn = |points| {
        EntryKind::Earn(Earn {
            member: m("alice"),
            points: pts(points),
            qualifying: false,
        })
    };
    step(0, earn(10));
    step(1, earn(5));
    step(2, earn(7));
    step(3, expiry(60_000));
    step(4, earn(3));
    step(
        5,
        EntryKind::ExpiryPolicy(ExpiryPolicy {
            lot_lifetime_ms: None,
        }),
    );
    step(6, earn(4));
    assert_eq!(lot_reads, [0, 0, 0, 0, 0, 0, 1]);
    let alice = memory.member(&m("alice")).unwrap().unwrap();
    assert_eq!((alice.balance, alice.lots), (29, 2));
    assert!(s == memory);
}

/// The lot records of `member` kept in `l`'s stored records.
fn lot_records(l: &Log, member: &str) -> Vec<Vec<u8>> {
    let from = records::lots_from(&m(member), None);
    let end = records::lots_end(&m(member));
    l.records.range(from..end).map(|(k, _)| k.clone()).collect()
}

#[test]
fn a_members_only_lot_that_never_expires_is_kept_in_the_summary_until_a_second_lot_joins() {
    let mut l = Log::new();
    l.earn("e1", "alice", 10).unwrap();
    l.earn("e2", "alice", 5).unwrap();
    let open = LogIndex::new(0).unwrap();
    let alice = l.state.member(&m("alice")).unwrap().unwrap();
    assert_eq!(
        (alice.lots, alice.open_lot, alice.open_lot_inline),
        (1, Some(open), true)
    );
    assert!(lot_records(&l, "alice").is_empty(), "no lot record");
    let only = Lot {
        id: open,
        expires_at: None,
        remaining: 15,
    };
    assert_eq!(l.state.lots(&m("alice"), None, 10).unwrap(), [only]);
    assert!(l
        .state
        .lots(&m("alice"), Some((None, open)), 10)
        .unwrap()
        .is_empty());
    assert!(l.state.lots(&m("alice"), None, 0).unwrap().is_empty());
    // Spent from, held, voided, refunded: still one record per write.
    l.redeem("r1", "alice", 4).unwrap();
    l.hold("h1", "alice", 3, 10_000).unwrap();
    l.apply("v1", EntryKind::Void(Void { hold: id("h1") }))
        .unwrap();
    l.apply(
        "f1",
        EntryKind::Refund(Refund {
            redemption: id("r1"),
            points: pts(1),
        }),
    )
    .unwrap();
    assert!(lot_records(&l, "alice").is_empty());
    assert_eq!(l.state.available(&m("alice"), t(l.time)).unwrap(), 12);
    // An expiring lot joins: the open lot is written under its key first.
    l.apply("p1", expiry(100)).unwrap();
    l.earn("e3", "alice", 7).unwrap();
    let alice = l.state.member(&m("alice")).unwrap().unwrap();
    assert_eq!((alice.lots, alice.open_lot_inline), (2, false));
    assert_eq!(lot_records(&l, "alice").len(), 2);
    let lots = l.state.lots(&m("alice"), None, 10).unwrap();
    assert_eq!(
        lots.iter().map(|l| l.remaining).collect::<Vec<_>>(),
        [7, 12]
    );
    l.state.check_invariants().unwrap();
    l.replay_equals_live();
}

#[test]
fn a_never_expiring_lot_left_alone_or_created_alone_moves_into_the_summary() {
    let mut l = Log::new();
    l.earn("e1", "alice", 12).unwrap();
    l.apply("p1", expiry(100)).unwrap();
    l.earn("e3", "alice", 7).unwrap();
    assert_eq!(lot_records(&l, "alice").len(), 2);
    // The expiring lot lapses and is expired: the open one, alone again, moves back into the
    // summary.
    l.at(l.time + 200);
    let due = l.state.due_expiries(t(l.time + 1), 10).unwrap();
    l.apply("x1", EntryKind::Expire(due[0].clone())).unwrap();
    assert!(lot_records(&l, "alice").is_empty());
    let alice = l.state.member(&m("alice")).unwrap().unwrap();
    assert_eq!(
        (alice.lots, alice.balance, alice.open_lot_inline),
        (1, 12, true)
    );
    // Two lots again, one spent whole by a redemption: the same.
    l.earn("e4", "alice", 6).unwrap();
    assert_eq!(lot_records(&l, "alice").len(), 2);
    l.redeem("r4", "alice", 6).unwrap();
    assert!(lot_records(&l, "alice").is_empty());
    // Spent whole, then refunded into a lot of its own, kept in the summary again.
    l.apply(
        "p2",
        EntryKind::ExpiryPolicy(ExpiryPolicy {
            lot_lifetime_ms: None,
        }),
    )
    .unwrap();
    l.redeem("r2", "alice", 12).unwrap();
    let alice = l.state.member(&m("alice")).unwrap().unwrap();
    assert_eq!((alice.lots, alice.open_lot, alice.balance), (0, None, 0));
    assert!(lot_records(&l, "alice").is_empty());
    l.apply(
        "f2",
        EntryKind::Refund(Refund {
            redemption: id("r2"),
            points: pts(2),
        }),
    )
    .unwrap();
    let alice = l.state.member(&m("alice")).unwrap().unwrap();
    assert_eq!(
        (alice.lots, alice.balance, alice.open_lot_inline),
        (1, 2, true)
    );
    assert!(lot_records(&l, "alice").is_empty());
    // An expire that names the summary's lot is refused as live.
    assert!(matches!(
        l.apply(
            "x2",
            EntryKind::Expire(Expire {
                member: m("alice"),
                lot: alice.open_lot.unwrap(),
                points: pts(2),
            })
        ),
        Err(StateError::LotNotExpired { .. })
    ));
    l.redeem("r3", "alice", 2).unwrap();
    l.state.check_invariants().unwrap();
    l.replay_equals_live();
}

#[test]
fn a_member_whose_only_lot_is_a_record_has_it_moved_into_the_summary_by_the_next_write() {
    // A store written before `open_lot_inline` existed: the summary ends after
    // `qualifying_from_ms` and the open lot is a record. It reads as before; the member's
    // next earning moves it into the summary.
    let mut l = Log::new();
    l.earn("e1", "alice", 10).unwrap();
    let key = records::named(record_prefix::MEMBER, "alice");
    let mut alice = l.state.member(&m("alice")).unwrap().unwrap();
    alice.open_lot_inline = false;
    let old = postcard::to_extend(&alice.qualifying_from_ms, records::encode(&alice)).unwrap();
    assert_eq!(MemberState::decode(&old).unwrap(), alice);
    let lot = records::lot_key(&m("alice"), None, alice.open_lot.unwrap());
    l.records.insert(lot.clone(), records::encode(&10u64));
    l.records.insert(key, old);
    let mut s = State::from_records(l.records.iter()).expect("records load");
    s.check_invariants().unwrap();
    let apply = |s: &mut State, recs: &mut BTreeMap<Vec<u8>, Vec<u8>>, n: &str, kind| {
        let e = Entry {
            time: t(5_000 + s.size()),
            id: id(n),
            kind,
        };
        s.apply(LogIndex::new(s.size()).unwrap(), &e).unwrap();
        for (k, v) in s.take_changes() {
            match v {
                Some(v) => recs.insert(k, v),
                None => recs.remove(&k),
            };
        }
    };
    let earn = EntryKind::Earn(Earn {
        member: m("alice"),
        points: pts(5),
        qualifying: false,
    });
    assert_eq!(s.lots(&m("alice"), None, 10).unwrap()[0].remaining, 10);
    apply(&mut s, &mut l.records, "e2", earn);
    assert!(!l.records.contains_key(&lot));
    let alice = s.member(&m("alice")).unwrap().unwrap();
    assert_eq!(
        (alice.lots, alice.balance, alice.open_lot_inline),
        (1, 15, true)
    );
    assert_eq!(s.lots(&m("alice"), None, 10).unwrap()[0].remaining, 15);
    let redeem = EntryKind::Redeem(Redeem {
        member: m("alice"),
        points: pts(15),
    });
    apply(&mut s, &mut l.records, "r1", redeem);
    assert_eq!(s.member(&m("alice")).unwrap().unwrap().lots, 0);
    s.check_invariants().unwrap();
    let loaded = State::from_records(l.records.iter()).expect("records load");
    assert!(loaded == s);
    // A summary that says it keeps a lot it cannot keep is refused.
    let mut bad = s.member(&m("alice")).unwrap().unwrap();
    bad.open_lot_inline = true;
    assert!(MemberState::decode(&bad.encode()).is_err());
}
