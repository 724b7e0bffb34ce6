//! Cross-implementation checks of the spec's test vectors (spec/protocol.md §9).
//!
//! - `spec/vectors/merkle.json` and `spec/vectors/checkpoint.json` must be exactly what their
//!   generators produce, must pass their checkers, and a few cases are re-checked here by hand
//!   through the public API.
//! - `spec/vectors/entries.json` is generated here: one canonical example of every entry type
//!   (plus variants), forming one replayable log, and a list of byte strings every decoder must
//!   refuse. Rewrite it with `UPDATE_VECTORS=1 cargo test -p ledger --test vectors`.

use std::collections::BTreeSet;

use base64::Engine as _;
use ed25519_dalek::SigningKey;
use ledger::agreement::{self, AgreementTerms, SignedAgreement};
use ledger::checkpoint::{open_checkpoint, sign_checkpoint, Checkpoint, NoteSigner, NoteVerifier};
use ledger::checkpoint_vectors;
use ledger::encoding::EncodingError;
use ledger::entry::{
    Adjust, Direction, Earn, Entry, EntryError, EntryKind, Expire, ExpiryPolicy, FxRate, HexBytes,
    HexHash, Hold, Obligation, ObligationRefund, ObligationSide, Post, RateCard, Redeem, Refund,
    SpendAuthorisation, Tier, TierAttestation, TierChange, TierPolicy, Void, ENTRY_TYPES,
};
use ledger::merkle::{self, leaf_hash, MemoryTree};
use ledger::quote::{make_quote, Ask, Pricing, Quote};
use ledger::receipt::Receipt;
use ledger::state::State;
use ledger::statement::{self, SignedStatement};
use ledger::types::{AccountId, BrandId, DurationMs, EntryId, LogIndex, LogTime, MemberId, Points};
use ledger::value::Rounding;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

const REGENERATE: &str = "UPDATE_VECTORS=1 cargo test -p ledger --test vectors";

fn spec_path(name: &str) -> String {
    format!("{}/../spec/vectors/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn read_committed(name: &str) -> String {
    let path = spec_path(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The file rendering every vector file uses: two-space pretty JSON, sorted keys, final newline.
fn render(doc: &Value) -> String {
    serde_json::to_string_pretty(doc).expect("a Value always serializes") + "\n"
}

fn hash_from_hex(s: &str) -> merkle::Hash {
    hex::decode(s)
        .expect("hex")
        .try_into()
        .expect("32-byte hash")
}

// ---------------------------------------------------------------------------------------------
// Merkle
// ---------------------------------------------------------------------------------------------

#[test]
fn merkle_vectors_match_generator_and_check() {
    let text = read_committed("merkle.json");
    let committed: Value = serde_json::from_str(&text).expect("merkle.json is JSON");
    let generated = merkle::vectors::generate();
    assert!(
        committed == generated,
        "spec/vectors/merkle.json differs from merkle::vectors::generate(); regenerate with \
         `UPDATE_VECTORS=1 cargo test -p ledger merkle::tests::vectors_file_matches_generator`"
    );
    assert!(
        text == render(&generated),
        "merkle.json is not in its canonical rendering"
    );
    merkle::vectors::check(&committed).expect("merkle.json checks");
}

#[test]
fn merkle_vectors_recompute_by_hand() {
    let committed: Value = serde_json::from_str(&read_committed("merkle.json")).unwrap();
    let cases = committed.as_array().expect("an array of cases");
    assert_eq!(cases.len(), 35, "spec/merkle.md promises 35 cases");
    // The empty tree, a few sequence sizes and the CT reference case, through MemoryTree.
    for c in [0usize, 1, 2, 7, 33, 34] {
        let case = &cases[c];
        let mut tree = MemoryTree::new();
        for leaf in case["leaves"].as_array().unwrap() {
            tree.push(&hex::decode(leaf.as_str().unwrap()).unwrap())
                .unwrap();
        }
        assert_eq!(
            hex::encode(tree.root().unwrap()),
            case["root"].as_str().unwrap(),
            "case {c}"
        );
        for inc in case["inclusion"].as_array().unwrap() {
            let (index, size) = (
                inc["index"].as_u64().unwrap(),
                inc["size"].as_u64().unwrap(),
            );
            let proof: Vec<String> = tree
                .inclusion_proof(index, size)
                .unwrap()
                .iter()
                .map(hex::encode)
                .collect();
            assert_eq!(
                json!(proof),
                inc["proof"],
                "case {c} inclusion {index}/{size}"
            );
        }
    }
    assert_eq!(
        cases[0]["root"],
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        cases[34]["root"],
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    );
    // Leaf 0 of the sequence is the ASCII string "leaf-0".
    assert_eq!(cases[1]["leaves"][0], hex::encode("leaf-0"));
}

// ---------------------------------------------------------------------------------------------
// Checkpoints
// ---------------------------------------------------------------------------------------------

#[test]
fn checkpoint_vectors_match_generator_and_check() {
    let text = read_committed("checkpoint.json");
    let committed: Value = serde_json::from_str(&text).expect("checkpoint.json is JSON");
    assert!(
        committed == checkpoint_vectors::generate(),
        "spec/vectors/checkpoint.json differs from checkpoint_vectors::generate(); \
         regenerate with `UPDATE_VECTORS=1 cargo test -p ledger checkpoint`"
    );
    assert!(
        text == checkpoint_vectors::render(),
        "checkpoint.json is not byte-for-byte checkpoint_vectors::render()"
    );
    assert_eq!(checkpoint_vectors::render(), render(&committed));
    checkpoint_vectors::check(&committed).expect("checkpoint.json checks");
}

#[test]
fn checkpoint_vectors_open_by_hand() {
    let committed: Value = serde_json::from_str(&read_committed("checkpoint.json")).unwrap();
    let cases = committed.as_array().unwrap();
    assert!(cases.len() >= 6);
    for (i, case) in cases.iter().enumerate() {
        let key = NoteVerifier::parse(case["verifier_key"].as_str().unwrap()).unwrap();
        let note = case["note"].as_str().unwrap();
        let (cp, signed) = open_checkpoint(note, &key).unwrap_or_else(|e| panic!("case {i}: {e}"));
        assert_eq!(cp.origin, case["origin"].as_str().unwrap(), "case {i}");
        assert_eq!(key.name(), cp.origin, "case {i}: origin is the key name");
        assert_eq!(Some(cp.size), case["size"].as_u64(), "case {i}");
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(cp.root),
            case["root_b64"].as_str().unwrap(),
            "case {i}"
        );
        assert_eq!(
            signed.to_string(),
            note,
            "case {i}: re-serializes byte for byte"
        );
        // Any change to the signed text must break the signature.
        let tampered = note.replacen(
            &format!("\n{}\n", cp.size),
            &format!("\n{}\n", cp.size + 1),
            1,
        );
        assert!(
            open_checkpoint(&tampered, &key).is_err(),
            "case {i}: tampered size accepted"
        );
    }
    // Size 0 commits to the empty tree; size 1 to a log of one empty entry.
    let empty = MemoryTree::new().root().unwrap();
    assert_eq!(
        cases[0]["root_b64"],
        base64::engine::general_purpose::STANDARD.encode(empty)
    );
    let mut one = MemoryTree::new();
    one.push(b"").unwrap();
    assert_eq!(
        cases[1]["root_b64"],
        base64::engine::general_purpose::STANDARD.encode(one.root().unwrap())
    );
}

// ---------------------------------------------------------------------------------------------
// Entries
// ---------------------------------------------------------------------------------------------

/// Log time of the first example entry (2023-11-14T22:13:20Z).
const T0: u64 = 1_700_000_000_000;
/// The example expiry policy's lot lifetime and tier window: 365 days.
const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;
/// The example tier policy's grace period: 90 days.
const GRACE_MS: u64 = 90 * 24 * 3600 * 1000;
/// The origin (signing key name) of the example log.
const ORIGIN: &str = "loyalty.example/brand-a";
/// The hold condition's preimage: the ASCII bytes of `loyalty-preimage-1`.
const PREIMAGE: &[u8] = b"loyalty-preimage-1";

fn member() -> MemberId {
    "m-8f3a9c".parse().unwrap()
}

fn pts(n: u64) -> Points {
    Points::new(n).unwrap()
}

fn at(ms: u64) -> LogTime {
    LogTime::new(ms).unwrap()
}

fn id(s: &str) -> EntryId {
    s.parse().unwrap()
}

fn brand(s: &str) -> BrandId {
    s.parse().unwrap()
}

/// The log time of the example agreement.
const T_AGREEMENT: u64 = T0 + 3_000 + YEAR_MS + 5_000;

/// The example agreement between `brand-a` and `brand-b`, both directions, co-signed by each
/// brand's node key: the key of origin `loyalty.example/<brand>`, whose secret seed is that of
/// spec/checkpoint.md §5 (`checkpoint_vectors::seed`).
fn example_agreement() -> SignedAgreement {
    let direction = |payer: &str, payee: &str| agreement::Direction {
        payer: brand(payer),
        payee: brand(payee),
    };
    let terms = AgreementTerms {
        agreement: id("agr-0001"),
        brands: [brand("brand-a"), brand("brand-b")],
        directions: vec![
            direction("brand-a", "brand-b"),
            direction("brand-b", "brand-a"),
        ],
        settlement_currency: "EUR".parse().unwrap(),
        fx_source: brand("brand-a"),
        fee_bps: 150,
        credit_limit_minor: 500_000,
        period_ms: DurationMs::new(86_400_000).unwrap(),
        period_origin: at(T0),
        rounding: Rounding::HalfEven,
        valid_from: at(T_AGREEMENT),
    };
    let signatures = terms
        .brands
        .iter()
        .map(|b| {
            let origin = format!("loyalty.example/{b}");
            let seed = checkpoint_vectors::seed(&origin);
            let signer = NoteSigner::from_seed(&origin, &seed).unwrap();
            agreement::sign(
                &terms,
                b,
                &SigningKey::from_bytes(&seed),
                &signer.verifier_key_string(),
            )
        })
        .collect();
    SignedAgreement { terms, signatures }
}

/// The example quote, logged by `brand-a` as the redeeming brand (payee) under the example
/// agreement: a price of EUR 4.99 in points of `brand-b` worth EUR 0.0125 each (rate card at
/// index 0 of `brand-b`'s log), quoted 500 ms before it is logged, live for 10 minutes.
fn example_quote() -> Quote {
    let pricing = Pricing {
        rate_card_index: 0,
        point_value: "0.0125".parse().unwrap(),
        base: "EUR".parse().unwrap(),
        fx: None,
    };
    make_quote(
        &example_agreement().terms,
        id("red-0001"),
        "m-77c1".parse().unwrap(),
        &brand("brand-b"),
        &brand("brand-a"),
        Ask::PriceMinor(499),
        &pricing,
        at(T_AGREEMENT + 500),
        DurationMs::new(600_000).unwrap(),
    )
    .unwrap()
}

/// The quote of the example redemption `red-0002`, made by `brand-b` (the payee) for 40 points
/// of the example member of `brand-a` (the payer, whose rate card is at index 2 of the example
/// log: EUR 0.0125), quoted 2.5 s after the agreement, live for 10 minutes.
fn example_payable_quote() -> Quote {
    let pricing = Pricing {
        rate_card_index: 2,
        point_value: "0.0125".parse().unwrap(),
        base: "EUR".parse().unwrap(),
        fx: None,
    };
    make_quote(
        &example_agreement().terms,
        id("red-0002"),
        member(),
        &brand("brand-a"),
        &brand("brand-b"),
        Ask::Points(pts(40)),
        &pricing,
        at(T_AGREEMENT + 2_500),
        DurationMs::new(600_000).unwrap(),
    )
    .unwrap()
}

/// The type tag of every `EntryKind` variant. The match has no wildcard, so a new entry type
/// does not compile here until it is given a tag (and then a vector, see below).
fn tag(kind: &EntryKind) -> &'static str {
    match kind {
        EntryKind::Earn(_) => "earn",
        EntryKind::Redeem(_) => "redeem",
        EntryKind::Adjust(_) => "adjust",
        EntryKind::Expire(_) => "expire",
        EntryKind::Hold(_) => "hold",
        EntryKind::Post(_) => "post",
        EntryKind::Void(_) => "void",
        EntryKind::Refund(_) => "refund",
        EntryKind::TierPolicy(_) => "tier_policy",
        EntryKind::TierChange(_) => "tier_change",
        EntryKind::RateCard(_) => "rate_card",
        EntryKind::ExpiryPolicy(_) => "expiry_policy",
        EntryKind::TierAttestation(_) => "tier_attestation",
        EntryKind::FxRate(_) => "fx_rate",
        EntryKind::SpendAuthorisation(_) => "spend_authorisation",
        EntryKind::Agreement(_) => "agreement",
        EntryKind::Quote(_) => "quote",
        EntryKind::Obligation(_) => "obligation",
        EntryKind::ObligationRefund(_) => "obligation_refund",
        EntryKind::Statement(_) => "statement",
    }
}

/// The example log: `(name, entry)` in log order; entry `i` is at index `i`.
fn example_log() -> Vec<(&'static str, Entry)> {
    let m = member();
    let e = |name: &'static str, ms: u64, entry_id: &str, kind: EntryKind| {
        (
            name,
            Entry {
                time: at(ms),
                id: id(entry_id),
                kind,
            },
        )
    };
    let condition = HexHash(Sha256::digest(PREIMAGE).into());
    let mut log = vec![
        e(
            "expiry_policy",
            T0,
            "expiry-policy-1",
            EntryKind::ExpiryPolicy(ExpiryPolicy {
                lot_lifetime_ms: Some(DurationMs::new(YEAR_MS).unwrap()),
            }),
        ),
        e(
            "tier_policy",
            T0 + 1_000,
            "tier-policy-1",
            EntryKind::TierPolicy(TierPolicy {
                tiers: vec![
                    Tier {
                        name: "blue".parse().unwrap(),
                        threshold: 0,
                    },
                    Tier {
                        name: "silver".parse().unwrap(),
                        threshold: 1_000,
                    },
                    Tier {
                        name: "gold".parse().unwrap(),
                        threshold: 5_000,
                    },
                ],
                window_ms: DurationMs::new(YEAR_MS).unwrap(),
                grace_ms: DurationMs::new(GRACE_MS).unwrap(),
            }),
        ),
        e(
            "rate_card",
            T0 + 2_000,
            "rate-card-1",
            EntryKind::RateCard(RateCard {
                currency: "EUR".parse().unwrap(),
                point_value: "0.0125".parse().unwrap(),
                valid_from: at(T0 + 86_400_000),
            }),
        ),
        e(
            "earn",
            T0 + 3_000,
            "earn-0001",
            EntryKind::Earn(Earn {
                member: m.clone(),
                points: pts(1_500),
                qualifying: true,
            }),
        ),
        e(
            "earn_not_qualifying",
            T0 + 4_000,
            "earn-0002",
            EntryKind::Earn(Earn {
                member: m.clone(),
                points: pts(200),
                qualifying: false,
            }),
        ),
        e(
            "tier_change",
            T0 + 5_000,
            "tier-change-0001",
            EntryKind::TierChange(TierChange {
                member: m.clone(),
                from: "blue".parse().unwrap(),
                to: "silver".parse().unwrap(),
            }),
        ),
        e(
            "redeem",
            T0 + 6_000,
            "redeem-0001",
            EntryKind::Redeem(Redeem {
                member: m.clone(),
                points: pts(300),
            }),
        ),
        e(
            "refund",
            T0 + 7_000,
            "refund-0001",
            EntryKind::Refund(Refund {
                redemption: id("redeem-0001"),
                points: pts(100),
            }),
        ),
        e(
            "hold",
            T0 + 8_000,
            "hold-0001",
            EntryKind::Hold(Hold {
                member: m.clone(),
                points: pts(250),
                expires_at: at(T0 + 8_000 + 3_600_000),
                payee: None,
                condition: None,
                authorisation: None,
            }),
        ),
        e(
            "post",
            T0 + 9_000,
            "post-0001",
            EntryKind::Post(Post {
                hold: id("hold-0001"),
                preimage: None,
            }),
        ),
        e(
            "hold_for_void",
            T0 + 10_000,
            "hold-0002",
            EntryKind::Hold(Hold {
                member: m.clone(),
                points: pts(100),
                expires_at: at(T0 + 10_000 + 3_600_000),
                payee: None,
                condition: None,
                authorisation: None,
            }),
        ),
        e(
            "void",
            T0 + 11_000,
            "void-0001",
            EntryKind::Void(Void {
                hold: id("hold-0002"),
            }),
        ),
        e(
            "hold_with_payee_and_condition",
            T0 + 12_000,
            "hold-0003",
            EntryKind::Hold(Hold {
                member: m.clone(),
                points: pts(400),
                expires_at: at(T0 + 12_000 + 600_000),
                payee: Some("brand-b".parse().unwrap()),
                condition: Some(condition),
                authorisation: None,
            }),
        ),
        e(
            "post_with_preimage",
            T0 + 13_000,
            "post-0002",
            EntryKind::Post(Post {
                hold: id("hold-0003"),
                preimage: Some(HexBytes(PREIMAGE.to_vec())),
            }),
        ),
        e(
            "refund_of_posted_hold",
            T0 + 14_000,
            "refund-0002",
            EntryKind::Refund(Refund {
                redemption: id("hold-0003"),
                points: pts(150),
            }),
        ),
        e(
            "adjust",
            T0 + 15_000,
            "adjust-0001",
            EntryKind::Adjust(Adjust {
                member: m.clone(),
                points: pts(50),
                direction: Direction::Credit,
                reason: "goodwill for a late delivery".into(),
            }),
        ),
        e(
            "adjust_debit",
            T0 + 16_000,
            "adjust-0002",
            EntryKind::Adjust(Adjust {
                member: m.clone(),
                points: pts(20),
                direction: Direction::Debit,
                reason: "duplicate earn reversed".into(),
            }),
        ),
        e(
            "expiry_policy_without_lifetime",
            T0 + 17_000,
            "expiry-policy-2",
            EntryKind::ExpiryPolicy(ExpiryPolicy {
                lot_lifetime_ms: None,
            }),
        ),
        // Lot 3 (earn-0001) expires at T0 + 3000 + 365 days; at that very time it is expired.
        e(
            "expire",
            T0 + 3_000 + YEAR_MS,
            "expire-0001",
            EntryKind::Expire(Expire {
                member: m.clone(),
                lot: LogIndex::new(3).unwrap(),
                points: pts(780),
            }),
        ),
        // Past the window, the member keeps silver for the grace period after earn-0001 left
        // it: until T0 + 3000 + 365 days + 90 days (spec/protocol.md §4.6).
        e(
            "tier_attestation",
            T0 + 3_000 + YEAR_MS + 1_000,
            &format!(
                "sys.attest.m-8f3a9c.silver.{}",
                T0 + 3_000 + YEAR_MS + GRACE_MS
            ),
            EntryKind::TierAttestation(TierAttestation {
                member: m.clone(),
                tier: "silver".parse().unwrap(),
                valid_until: Some(at(T0 + 3_000 + YEAR_MS + GRACE_MS)),
            }),
        ),
        // Entries added later are appended here, so that the indexes above never move.
        e(
            "fx_rate",
            T0 + 3_000 + YEAR_MS + 2_000,
            "fx-rate-1",
            EntryKind::FxRate(FxRate {
                from: "EUR".parse().unwrap(),
                to: "JPY".parse().unwrap(),
                rate: "162.35".parse().unwrap(),
                valid_from: at(T0 + 3_000 + YEAR_MS + 2_000 + 86_400_000),
            }),
        ),
        e(
            "spend_authorisation",
            T0 + 3_000 + YEAR_MS + 3_000,
            "auth-0001",
            EntryKind::SpendAuthorisation(SpendAuthorisation {
                member: m.clone(),
                payee: "brand-b".parse().unwrap(),
                max_points: pts(50),
                expires_at: at(T0 + 3_000 + YEAR_MS + 3_000 + 900_000),
            }),
        ),
        // Lot 15 (adjust-0001, 50 points) is the member's only live lot by now.
        e(
            "hold_with_authorisation",
            T0 + 3_000 + YEAR_MS + 4_000,
            "hold-0004",
            EntryKind::Hold(Hold {
                member: m,
                points: pts(40),
                expires_at: at(T0 + 3_000 + YEAR_MS + 4_000 + 600_000),
                payee: Some("brand-b".parse().unwrap()),
                condition: Some(condition),
                authorisation: Some(id("auth-0001")),
            }),
        ),
        e(
            "agreement",
            T_AGREEMENT,
            "agr-0001",
            EntryKind::Agreement(example_agreement()),
        ),
        e(
            "quote",
            T_AGREEMENT + 1_000,
            "red-0001",
            EntryKind::Quote(example_quote()),
        ),
        // A cross-brand redemption at the payer (spec/redemption.md §3): brand-a's member
        // authorises brand-b, brand-b prepares a hold (id = redemption id) under the
        // authorisation and a hash lock, commits by revealing the preimage, and brand-a logs
        // the payable obligation with the post. Hold-0004 (40 points) still pends, so lot 15
        // has 10 points left: the member earns first.
        e(
            "earn_before_redemption",
            T_AGREEMENT + 2_000,
            "earn-0003",
            EntryKind::Earn(Earn {
                member: member(),
                points: pts(100),
                qualifying: true,
            }),
        ),
        e(
            "spend_authorisation_for_redemption",
            T_AGREEMENT + 3_000,
            "auth-0002",
            EntryKind::SpendAuthorisation(SpendAuthorisation {
                member: member(),
                payee: brand("brand-b"),
                max_points: pts(40),
                expires_at: at(T_AGREEMENT + 3_000 + 900_000),
            }),
        ),
        e(
            "hold_for_redemption",
            T_AGREEMENT + 4_000,
            "red-0002",
            EntryKind::Hold(Hold {
                member: member(),
                points: pts(40),
                expires_at: at(T_AGREEMENT + 4_000 + 600_000),
                payee: Some(brand("brand-b")),
                condition: Some(condition),
                authorisation: Some(id("auth-0002")),
            }),
        ),
        e(
            "post_of_redemption",
            T_AGREEMENT + 5_000,
            "post-red-0002",
            EntryKind::Post(Post {
                hold: id("red-0002"),
                preimage: Some(HexBytes(PREIMAGE.to_vec())),
            }),
        ),
        e(
            "obligation_payable",
            T_AGREEMENT + 5_001,
            "obl.red-0002",
            EntryKind::Obligation(Obligation {
                side: ObligationSide::Payable,
                quote: example_payable_quote(),
                counterpart: None,
            }),
        ),
    ];
    // 10 of the 40 points come back: a quarter of the obligation, rounded half-even.
    let q = example_payable_quote();
    let amount =
        ledger::value::refund_minor(q.amount_minor, 40, 0, 10, Rounding::HalfEven).unwrap();
    log.push(e(
        "obligation_refund_payable",
        T_AGREEMENT + 6_000,
        "rfd.brand-b.rf-0001",
        EntryKind::ObligationRefund(ObligationRefund {
            side: ObligationSide::Payable,
            payer: brand("brand-a"),
            redemption: id("red-0002"),
            refund: id("rf-0001"),
            points: pts(10),
            amount_minor: amount,
            counterpart: None,
        }),
    ));
    // The day's statement, co-signed, logged once the day is over.
    let (statement, day_end) = example_statement(&log);
    log.push(e(
        "statement",
        day_end + 1_000,
        "stmt.agr-0001.0",
        EntryKind::Statement(statement),
    ));
    log
}

/// The co-signed statement of the settlement day of the example redemption, from the lines of
/// `prior` (replayed), and the log time at which that day ends.
fn example_statement(prior: &[(&'static str, Entry)]) -> (SignedStatement, u64) {
    let mut state = State::new();
    for (i, (_, e)) in prior.iter().enumerate() {
        state.apply(LogIndex::new(i as u64).unwrap(), e).unwrap();
    }
    let a = example_agreement();
    let k = a.terms.period_of(at(T_AGREEMENT + 5_001)).unwrap();
    let day = statement::period_bounds(&a.terms, k).unwrap();
    let st = statement::compute(
        &a.terms,
        day,
        &state.lines_in(&a.terms.agreement, day).unwrap(),
    )
    .unwrap();
    let signatures = a
        .terms
        .brands
        .iter()
        .map(|b| {
            let origin = format!("loyalty.example/{b}");
            let seed = checkpoint_vectors::seed(&origin);
            let signer = NoteSigner::from_seed(&origin, &seed).unwrap();
            statement::sign(
                &st,
                b,
                &SigningKey::from_bytes(&seed),
                &signer.verifier_key_string(),
            )
        })
        .collect();
    (
        SignedStatement {
            statement: st,
            signatures,
        },
        day.to().get(),
    )
}

/// One byte string every decoder must refuse: `(why, bytes, error class)`.
fn invalid_cases() -> Vec<(&'static str, String, &'static str)> {
    const EARN: &str = r#"{"body":{"member":"m-8f3a9c","points":100},"id":"earn-0001","time":1700000003000,"type":"earn","v":1}"#;
    let earn_with = |from: &str, to: &str| {
        assert!(EARN.contains(from), "{from} is not in the base earn entry");
        EARN.replacen(from, to, 1)
    };
    let body = |type_name: &str, body: &str| {
        format!(r#"{{"body":{body},"id":"x-1","time":1700000003000,"type":"{type_name}","v":1}}"#)
    };
    let upper = hex::encode(Sha256::digest(PREIMAGE)).to_uppercase();
    vec![
        ("whitespace after a colon", earn_with(r#""points":"#, r#""points": "#), "non_canonical"),
        ("trailing newline", format!("{EARN}\n"), "non_canonical"),
        (
            "keys not in sorted order",
            r#"{"v":1,"body":{"member":"m-8f3a9c","points":100},"id":"earn-0001","time":1700000003000,"type":"earn"}"#.into(),
            "non_canonical",
        ),
        ("duplicate key", earn_with(r#""id":"earn-0001","#, r#""id":"earn-0001","id":"earn-0001","#), "non_canonical"),
        ("escaped character that needs no escape", earn_with("m-8f3a9c", r"m-8f3a9\u0063"), "non_canonical"),
        ("default value written out (qualifying: true)", earn_with(r#""points":100}"#, r#""points":100,"qualifying":true}"#), "non_canonical"),
        ("float", earn_with(r#""points":100"#, r#""points":100.5"#), "non_integer"),
        ("integral float", earn_with(r#""points":100"#, r#""points":100.0"#), "non_integer"),
        ("exponent", earn_with(r#""points":100"#, r#""points":1e2"#), "non_integer"),
        ("negative zero", earn_with(r#""time":1700000003000"#, r#""time":-0"#), "non_integer"),
        ("2^53 points", earn_with(r#""points":100"#, r#""points":9007199254740992"#), "out_of_range"),
        ("2^64 - 1 log time", earn_with(r#""time":1700000003000"#, r#""time":18446744073709551615"#), "out_of_range"),
        ("negative points", earn_with(r#""points":100"#, r#""points":-100"#), "invalid"),
        ("zero points", earn_with(r#""points":100"#, r#""points":0"#), "invalid"),
        ("negative log time", earn_with(r#""time":1700000003000"#, r#""time":-1"#), "invalid"),
        ("points as a string", earn_with(r#""points":100"#, r#""points":"100""#), "invalid"),
        ("unknown body field", earn_with(r#""points":100}"#, r#""points":100,"tag":"x"}"#), "invalid"),
        ("unknown envelope field", earn_with(r#""id":"earn-0001","#, r#""extra":1,"id":"earn-0001","#), "invalid"),
        ("missing body field", earn_with(r#","points":100"#, ""), "invalid"),
        ("missing version", earn_with(r#","v":1"#, ""), "invalid"),
        ("unknown type", earn_with(r#""type":"earn""#, r#""type":"mint""#), "unknown_type"),
        ("version 2", earn_with(r#""v":1"#, r#""v":2"#), "unsupported_version"),
        ("member id with '@'", earn_with("m-8f3a9c", "alice@example.com"), "invalid"),
        ("empty member id", earn_with("m-8f3a9c", ""), "invalid"),
        ("entry id with a space", earn_with("earn-0001", "earn 0001"), "invalid"),
        (
            "uppercase hex in a hold condition",
            body("hold", &format!(r#"{{"condition":"{upper}","expires_at":1700003603000,"member":"m-8f3a9c","points":100}}"#)),
            "invalid",
        ),
        ("empty preimage", body("post", r#"{"hold":"hold-0003","preimage":""}"#), "invalid"),
        ("direction not lowercase", body("adjust", r#"{"direction":"Credit","member":"m-8f3a9c","points":5,"reason":"r"}"#), "invalid"),
        ("empty adjustment reason", body("adjust", r#"{"direction":"credit","member":"m-8f3a9c","points":5,"reason":""}"#), "invalid"),
        ("base tier threshold not 0", body("tier_policy", r#"{"grace_ms":0,"tiers":[{"name":"blue","threshold":10}],"window_ms":1000}"#), "invalid"),
        (
            "tier thresholds not ascending",
            body("tier_policy", r#"{"grace_ms":0,"tiers":[{"name":"blue","threshold":0},{"name":"gold","threshold":0}],"window_ms":1000}"#),
            "invalid",
        ),
        ("zero tier window", body("tier_policy", r#"{"grace_ms":0,"tiers":[{"name":"blue","threshold":0}],"window_ms":0}"#), "invalid"),
        ("tier change to the same tier", body("tier_change", r#"{"from":"blue","member":"m-8f3a9c","to":"blue"}"#), "invalid"),
        ("decimal with a trailing zero", body("rate_card", r#"{"currency":"EUR","point_value":"0.0120","valid_from":1700086400000}"#), "invalid"),
        ("currency without a minor unit", body("rate_card", r#"{"currency":"XAU","point_value":"0.01","valid_from":1700086400000}"#), "invalid"),
        ("zero lot lifetime", body("expiry_policy", r#"{"lot_lifetime_ms":0}"#), "invalid"),
        ("zero FX rate", body("fx_rate", r#"{"from":"EUR","rate":"0","to":"JPY","valid_from":1700086400000}"#), "invalid"),
        ("FX rate as a JSON number", body("fx_rate", r#"{"from":"EUR","rate":162,"to":"JPY","valid_from":1700086400000}"#), "invalid"),
        (
            "unknown field in a spend authorisation",
            body("spend_authorisation", r#"{"expires_at":1700003603000,"max_points":50,"member":"m-8f3a9c","payee":"brand-b","scope":"all"}"#),
            "invalid",
        ),
        (
            "zero maximum in a spend authorisation",
            body("spend_authorisation", r#"{"expires_at":1700003603000,"max_points":0,"member":"m-8f3a9c","payee":"brand-b"}"#),
            "invalid",
        ),
        (
            "agreement terms changed after signing",
            {
                let mut a = example_agreement();
                a.terms.credit_limit_minor += 1;
                body("agreement", &String::from_utf8(ledger::encoding::to_canonical(&a)).unwrap())
            },
            "invalid",
        ),
        (
            "zero amount in a quote",
            {
                let mut q = example_quote();
                q.amount_minor = 0;
                body("quote", &String::from_utf8(ledger::encoding::to_canonical(&q)).unwrap())
            },
            "invalid",
        ),
        (
            "receivable obligation without a counterpart",
            {
                let o = Obligation {
                    side: ObligationSide::Receivable,
                    quote: example_payable_quote(),
                    counterpart: None,
                };
                body("obligation", &String::from_utf8(ledger::encoding::to_canonical(&o)).unwrap())
            },
            "invalid",
        ),
        (
            "receivable refund without a counterpart",
            body(
                "obligation_refund",
                r#"{"amount_minor":1,"payer":"brand-a","points":1,"redemption":"red-0002","refund":"rf-1","side":"receivable"}"#,
            ),
            "invalid",
        ),
        (
            "statement with one signature",
            {
                let (mut st, _) = example_statement(&example_log()[..0]);
                st.signatures.truncate(1);
                body("statement", &String::from_utf8(ledger::encoding::to_canonical(&st)).unwrap())
            },
            "invalid",
        ),
        ("an array, not an object", "[]".into(), "invalid"),
        ("truncated JSON", EARN[..EARN.len() - 1].to_string(), "malformed"),
    ]
}

/// The short class of a decoding error, as used in `entries.json`.
fn error_class(e: &EntryError) -> &'static str {
    match e {
        EntryError::Encoding(EncodingError::NonCanonical) => "non_canonical",
        EntryError::Encoding(EncodingError::NonInteger) => "non_integer",
        EntryError::Encoding(EncodingError::OutOfRange(_)) => "out_of_range",
        EntryError::Encoding(EncodingError::Malformed(_)) => "malformed",
        EntryError::Encoding(EncodingError::TooLarge { .. }) => "too_large",
        EntryError::UnsupportedVersion(_) => "unsupported_version",
        EntryError::UnknownType(_) => "unknown_type",
        EntryError::Invalid(_) => "invalid",
    }
}

fn text(entry: &Entry) -> String {
    String::from_utf8(entry.to_bytes()).expect("canonical JSON is UTF-8")
}

/// Builds the whole `entries.json` document from the ledger's types and state machine.
fn generate_entries() -> Value {
    let log = example_log();
    let mut state = State::new();
    let mut tree = MemoryTree::new();
    let mut entries = Vec::new();
    for (i, (name, entry)) in log.iter().enumerate() {
        let index = LogIndex::new(i as u64).unwrap();
        let applied = state
            .apply(index, entry)
            .unwrap_or_else(|e| panic!("example entry {i} ({name}) does not apply: {e}"));
        let bytes = entry.to_bytes();
        tree.push(&bytes).unwrap();
        entries.push(json!({
            "name": name,
            "index": i,
            "type": entry.kind.type_name(),
            "entry": text(entry),
            "leaf_hash": hex::encode(leaf_hash(&bytes)),
            "intent_digest": hex::encode(entry.kind.intent_digest()),
            "transfers": serde_json::to_value(&applied.transfers).unwrap(),
        }));
    }
    state
        .check_invariants()
        .expect("the example log keeps every invariant");

    let mut accounts = Map::new();
    for (account, balance) in state.system_accounts() {
        let b = i64::try_from(*balance).expect("example balances are small");
        accounts.insert(account.to_string(), json!(b));
    }
    let m = member();
    let ms = state
        .member(&m)
        .unwrap()
        .expect("the example member exists");
    let lots = state.lots(&m, None, ledger::state::LOTS_PAGE_MAX).unwrap();
    accounts.insert(AccountId::Member(m.clone()).to_string(), json!(ms.balance));

    let size = tree.size();
    let root = tree.root().unwrap();
    let signer = NoteSigner::from_seed(ORIGIN, &checkpoint_vectors::seed(ORIGIN)).unwrap();
    let cp = Checkpoint {
        origin: ORIGIN.into(),
        size,
        root,
        extensions: Vec::new(),
    };
    let note = sign_checkpoint(&cp, &signer).unwrap().to_string();
    let receipt_index = log
        .iter()
        .position(|(n, _)| *n == "post_with_preimage")
        .unwrap() as u64;
    let receipt = Receipt {
        index: receipt_index,
        entry: text(&log[receipt_index as usize].1),
        inclusion_proof: tree
            .inclusion_proof(receipt_index, size)
            .unwrap()
            .iter()
            .map(hex::encode)
            .collect(),
        checkpoint: note.clone(),
    };
    let last_time = state.last_time().unwrap();
    let mut members = Map::new();
    members.insert(
        m.to_string(),
        json!({
            "balance": ms.balance,
            "lots": serde_json::to_value(&lots).unwrap(),
            "pending": ms.pending,
            "tier": state.current_tier(&m).unwrap().map(|t| t.to_string()),
            "tier_valid_until": state.tier_valid_until(&m, last_time).unwrap().map(LogTime::get),
        }),
    );

    let invalid: Vec<Value> = invalid_cases()
        .into_iter()
        .map(|(why, bytes, error)| json!({ "why": why, "bytes": bytes, "error": error }))
        .collect();

    json!({
        "entries": entries,
        "invalid": invalid,
        "log": {
            "accounts": accounts,
            "checkpoint": note,
            "members": members,
            "receipt": serde_json::to_value(&receipt).unwrap(),
            "root": hex::encode(root),
            "size": size,
            "verifier_key": signer.verifier_key_string(),
        },
    })
}

#[test]
fn entries_vectors_file_matches_generator() {
    let doc = generate_entries();
    let rendered = render(&doc);
    let path = spec_path("entries.json");
    if std::env::var("UPDATE_VECTORS").as_deref() == Ok("1") {
        std::fs::write(&path, &rendered).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
        return;
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {path} ({e}); generate it with `{REGENERATE}`"));
    if committed != rendered {
        let first = committed
            .lines()
            .zip(rendered.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "the length".to_string(), |l| format!("line {}", l + 1));
        panic!(
            "{path} differs from the generator (first at {first}). If the change is intended \
             (it changes the protocol's vectors), regenerate with `{REGENERATE}`"
        );
    }
}

fn committed_entries() -> Value {
    serde_json::from_str(&read_committed("entries.json")).expect("entries.json is JSON")
}

#[test]
fn entries_vectors_cover_every_entry_type() {
    let doc = committed_entries();
    let in_file: BTreeSet<&str> = doc["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    let known: BTreeSet<&str> = ENTRY_TYPES.iter().copied().collect();
    assert_eq!(known.len(), ENTRY_TYPES.len(), "ENTRY_TYPES has duplicates");
    assert_eq!(
        in_file, known,
        "entries.json must hold an example of every entry type"
    );
    // Every variant's tag (see `tag`, an exhaustive match) is listed in ENTRY_TYPES and agrees
    // with EntryKind::type_name.
    for (_, e) in example_log() {
        assert_eq!(tag(&e.kind), e.kind.type_name());
        assert!(known.contains(tag(&e.kind)));
    }
    // The tags the decoder accepts are exactly ENTRY_TYPES.
    for t in ENTRY_TYPES {
        let r = EntryKind::from_type_and_body(t, json!({}));
        assert!(
            !matches!(r, Err(EntryError::UnknownType(_))),
            "{t} is listed but not decoded"
        );
    }
    // The invalid cases use every error class of the format except `too_large`, which is
    // tested below without a 16 KiB string in the file.
    let classes: BTreeSet<&str> = doc["invalid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["error"].as_str().unwrap())
        .collect();
    let expected: BTreeSet<&str> = [
        "invalid",
        "malformed",
        "non_canonical",
        "non_integer",
        "out_of_range",
        "unknown_type",
        "unsupported_version",
    ]
    .into_iter()
    .collect();
    assert_eq!(classes, expected);
}

#[test]
fn valid_entry_vectors_round_trip() {
    let doc = committed_entries();
    for (i, v) in doc["entries"].as_array().unwrap().iter().enumerate() {
        let text = v["entry"].as_str().unwrap();
        let entry = Entry::from_bytes(text.as_bytes())
            .unwrap_or_else(|e| panic!("entry {i} ({}) refused: {e}", v["name"]));
        assert_eq!(
            entry.to_bytes(),
            text.as_bytes(),
            "entry {i} re-encodes identically"
        );
        assert_eq!(
            entry.kind.type_name(),
            v["type"].as_str().unwrap(),
            "entry {i}"
        );
        assert_eq!(Some(i as u64), v["index"].as_u64());
        assert_eq!(
            hex::encode(leaf_hash(text.as_bytes())),
            v["leaf_hash"].as_str().unwrap(),
            "entry {i} leaf hash"
        );
        // The leaf hash by the definition: SHA-256(0x00 || bytes).
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(text.as_bytes());
        assert_eq!(hex::encode(h.finalize()), v["leaf_hash"].as_str().unwrap());
        assert_eq!(
            hex::encode(entry.kind.intent_digest()),
            v["intent_digest"].as_str().unwrap(),
            "entry {i} intent digest"
        );
        // The intent digest by the definition: SHA-256 of the canonical {"body", "type"}.
        let parsed: Value = serde_json::from_str(text).unwrap();
        let intent = format!(
            r#"{{"body":{},"type":{}}}"#,
            String::from_utf8(ledger::encoding::to_canonical(&parsed["body"])).unwrap(),
            parsed["type"]
        );
        assert_eq!(
            hex::encode(Sha256::digest(intent.as_bytes())),
            v["intent_digest"].as_str().unwrap(),
            "entry {i} intent digest by hand"
        );
    }
}

#[test]
fn invalid_entry_vectors_are_refused_with_their_class() {
    let doc = committed_entries();
    for c in doc["invalid"].as_array().unwrap() {
        let (why, bytes, class) = (
            c["why"].as_str().unwrap(),
            c["bytes"].as_str().unwrap(),
            c["error"].as_str().unwrap(),
        );
        match Entry::from_bytes(bytes.as_bytes()) {
            Ok(_) => panic!("{why}: accepted {bytes}"),
            Err(e) => assert_eq!(error_class(&e), class, "{why}: {bytes}: {e}"),
        }
    }
}

#[test]
fn non_utf8_and_oversized_entries_are_refused() {
    assert!(matches!(
        Entry::from_bytes(b"{\"body\":\"\xff\"}"),
        Err(EntryError::Encoding(EncodingError::Malformed(_)))
    ));
    let reason = "r".repeat(ledger::entry::ENTRY_BYTES_MAX);
    let big = format!(
        r#"{{"body":{{"direction":"credit","member":"m-8f3a9c","points":5,"reason":"{reason}"}},"id":"x-1","time":1,"type":"adjust","v":1}}"#
    );
    assert_eq!(
        Entry::from_bytes(big.as_bytes()).map_err(|e| error_class(&e)),
        Err("too_large")
    );
}

#[test]
fn example_log_replays_to_the_recorded_transfers_root_and_state() {
    let doc = committed_entries();
    let mut state = State::new();
    let mut tree = MemoryTree::new();
    for (i, v) in doc["entries"].as_array().unwrap().iter().enumerate() {
        let text = v["entry"].as_str().unwrap();
        let entry = Entry::from_bytes(text.as_bytes()).unwrap();
        let applied = state
            .apply(LogIndex::new(i as u64).unwrap(), &entry)
            .unwrap_or_else(|e| panic!("entry {i} does not replay: {} ({e})", e.code()));
        assert_eq!(
            serde_json::to_value(&applied.transfers).unwrap(),
            v["transfers"],
            "entry {i} transfers"
        );
        tree.push(text.as_bytes()).unwrap();
    }
    state.check_invariants().unwrap();
    let log = &doc["log"];
    assert_eq!(Some(tree.size()), log["size"].as_u64());
    assert_eq!(
        hex::encode(tree.root().unwrap()),
        log["root"].as_str().unwrap()
    );
    let sum: i64 = log["accounts"]
        .as_object()
        .unwrap()
        .values()
        .map(|b| b.as_i64().unwrap())
        .sum();
    assert_eq!(sum, 0, "conservation");
    for (account, balance) in log["accounts"].as_object().unwrap() {
        let a: AccountId = account.parse().unwrap();
        assert_eq!(
            state.account_balance(&a).unwrap(),
            i128::from(balance.as_i64().unwrap()),
            "{account}"
        );
    }
    // Replaying an entry again is refused: ids are unique, times strictly increase.
    let first = Entry::from_bytes(doc["entries"][0]["entry"].as_str().unwrap().as_bytes()).unwrap();
    let next = LogIndex::new(tree.size()).unwrap();
    assert_eq!(
        state.apply(next, &first).unwrap_err().code(),
        "time_not_increasing"
    );
}

#[test]
fn example_receipt_verifies() {
    let doc = committed_entries();
    let log = &doc["log"];
    let key = NoteVerifier::parse(log["verifier_key"].as_str().unwrap()).unwrap();
    assert_eq!(key.name(), ORIGIN);
    let receipt: Receipt = serde_json::from_value(log["receipt"].clone()).unwrap();
    let verified = receipt.verify(&key).expect("the example receipt verifies");
    assert_eq!(verified.checkpoint.size, log["size"].as_u64().unwrap());
    assert_eq!(
        hex::encode(verified.checkpoint.root),
        log["root"].as_str().unwrap()
    );
    let (cp, _) = open_checkpoint(log["checkpoint"].as_str().unwrap(), &key).unwrap();
    assert_eq!(cp.root, hash_from_hex(log["root"].as_str().unwrap()));
    // The receipt's entry is the one at its index in the example log.
    let at_index = &doc["entries"][receipt.index as usize]["entry"];
    assert_eq!(at_index.as_str(), Some(receipt.entry.as_str()));
    // A receipt for other bytes, or another index, does not verify.
    let mut forged = receipt.clone();
    forged.entry = forged.entry.replace("hold-0003", "hold-0004");
    assert!(Entry::from_bytes(forged.entry.as_bytes()).is_ok());
    assert!(forged.verify(&key).is_err());
    let mut moved = receipt.clone();
    moved.index += 1;
    assert!(moved.verify(&key).is_err());
}

#[test]
fn the_entry_writer_matches_the_reference_canonicaliser_on_every_example() {
    // `Entry::to_bytes` writes canonical JSON with the ledger's own JCS writer; the
    // serde_json_canonicalizer crate stays the reference it is checked against.
    for (name, entry) in example_log() {
        let reference = serde_json_canonicalizer::to_vec(&entry.to_value()).unwrap();
        assert_eq!(entry.to_bytes(), reference, "{name}");
        assert_eq!(
            ledger::encoding::to_canonical(&entry.to_value()),
            reference,
            "{name}"
        );
        let intent = json!({"body": entry.kind.body_value(), "type": entry.kind.type_name()});
        let digest: [u8; 32] =
            Sha256::digest(serde_json_canonicalizer::to_vec(&intent).unwrap()).into();
        assert_eq!(entry.kind.intent_digest(), digest, "{name}");
    }
}
