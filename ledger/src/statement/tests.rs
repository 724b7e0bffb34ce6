//! Unit and property tests of settlement statements and reconciliation.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::agreement::Direction;
use crate::encoding::parse_canonical;
use crate::types::DurationMs;
use crate::value::Rounding;
use proptest::prelude::*;

const DAY: u64 = 86_400_000;
const AIR: &str = "air";
const COFFEE: &str = "coffee";

fn brand(s: &str) -> BrandId {
    s.parse().unwrap()
}

fn other(payer: &str) -> &'static str {
    if payer == AIR {
        COFFEE
    } else {
        AIR
    }
}

fn terms() -> AgreementTerms {
    AgreementTerms {
        agreement: "agr-1".parse().unwrap(),
        brands: [brand(AIR), brand(COFFEE)],
        directions: vec![
            Direction {
                payer: brand(AIR),
                payee: brand(COFFEE),
            },
            Direction {
                payer: brand(COFFEE),
                payee: brand(AIR),
            },
        ],
        settlement_currency: "EUR".parse().unwrap(),
        fx_source: brand(AIR),
        fee_bps: 150,
        credit_limit_minor: 1_000_000,
        period_ms: DurationMs::new(DAY).unwrap(),
        period_origin: LogTime::new(0).unwrap(),
        rounding: Rounding::HalfEven,
        valid_from: LogTime::new(0).unwrap(),
    }
}

fn day(k: u64) -> Period {
    period_bounds(&terms(), k).unwrap()
}

fn t(v: u64) -> LogTime {
    LogTime::new(v).unwrap()
}

/// A line from `payer` to the other brand.
fn line(
    payer: &str,
    redemption: &str,
    refund: Option<&str>,
    amount_minor: i64,
    time: u64,
    index: u64,
) -> ObligationLine {
    ObligationLine {
        redemption: redemption.parse().unwrap(),
        refund: refund.map(|r| r.parse().unwrap()),
        payer: brand(payer),
        payee: brand(other(payer)),
        amount_minor,
        time: t(time),
        index: LogIndex::new(index).unwrap(),
    }
}

fn status_of(
    r: &Reconciliation,
    payer: &str,
    redemption: &str,
    refund: Option<&str>,
) -> LineStatus {
    let found: Vec<&ReconciledLine> = r
        .lines
        .iter()
        .filter(|l| {
            l.payer.as_str() == payer
                && l.redemption.as_str() == redemption
                && l.refund.as_ref().map(|x| x.as_str()) == refund
        })
        .collect();
    assert_eq!(found.len(), 1, "{payer} {redemption} {refund:?} in {r:#?}");
    found[0].status
}

#[test]
fn period_bounds_are_the_settlement_periods_of_the_terms() {
    let mut terms = terms();
    terms.period_origin = t(1_000);
    let p = period_bounds(&terms, 3).unwrap();
    assert_eq!((p.from(), p.to()), (t(1_000 + 3 * DAY), t(1_000 + 4 * DAY)));
    assert_eq!(terms.period_of(p.from()), Some(3));
    assert_eq!(terms.period_of(t(p.to().get() - 1)), Some(3));
    assert_eq!(terms.period_of(p.to()), Some(4));
    assert!(p.contains(p.from()) && !p.contains(p.to()));
    assert_eq!(p.settlement_index(&terms), Some(3));
    assert_eq!(
        Period::new(t(1_000), t(1_000 + DAY + 1))
            .unwrap()
            .settlement_index(&terms),
        None
    );
    assert_eq!(
        Period::new(t(0), t(DAY)).unwrap().settlement_index(&terms),
        None
    );
    let last = (MAX_TIME_MS - 1_000) / DAY;
    assert_eq!(
        period_bounds(&terms, last).unwrap_err(),
        StatementError::PeriodOutOfRange { k: last }
    );
    assert!(period_bounds(&terms, last - 1).is_ok());
    assert_eq!(
        period_bounds(&terms, u64::MAX).unwrap_err().code(),
        "statement_period_out_of_range"
    );
    assert_eq!(
        Period::new(t(5), t(5)).unwrap_err().code(),
        "statement_invalid_period"
    );
    // The JSON form is checked the same way and refuses unknown fields.
    let p: Period = serde_json::from_str(r#"{"from":0,"to":1}"#).unwrap();
    assert_eq!(p, Period::new(t(0), t(1)).unwrap());
    assert!(serde_json::from_str::<Period>(r#"{"from":1,"to":1}"#).is_err());
    assert!(serde_json::from_str::<Period>(r#"{"from":0,"to":1,"k":0}"#).is_err());
}

/// A test vector: the canonical statement both brands sign.
#[test]
fn a_statement_sums_each_direction_and_nets_them() {
    let lines = [
        line(AIR, "r1", None, 1_000, 10, 5),
        line(AIR, "r2", None, 250, 20, 6),
        line(AIR, "r1", Some("x1"), -100, 30, 7),
        // The same redemption id in the other direction is another line.
        line(COFFEE, "r1", None, 400, 40, 8),
        // Outside the period: checked, not counted.
        line(AIR, "r3", None, 999, DAY, 9),
    ];
    let s = compute(&terms(), day(0), &lines).unwrap();
    let bytes = to_canonical(&s);
    assert_eq!(
        std::str::from_utf8(&bytes).unwrap(),
        concat!(
            r#"{"agreement":"agr-1","currency":"EUR","gross":["#,
            r#"{"lines":3,"obligations_minor":1250,"payee":"coffee","payer":"air","refunds_minor":100,"total_minor":1150},"#,
            r#"{"lines":1,"obligations_minor":400,"payee":"air","payer":"coffee","refunds_minor":0,"total_minor":400}],"#,
            r#""lines":4,"net":{"amount_minor":750,"payee":"coffee","payer":"air"},"#,
            r#""period":{"from":0,"to":86400000}}"#
        )
    );
    // The bytes are canonical and parse back to the same statement.
    parse_canonical(&bytes, 1 << 16).unwrap();
    assert_eq!(serde_json::from_slice::<Statement>(&bytes).unwrap(), s);
    assert!(signing_message(&s).starts_with(b"loyalty-statement/v1\n{\"agreement\""));
    assert_eq!(s.position_minor(&brand(AIR)), Some(-750));
    assert_eq!(s.position_minor(&brand(COFFEE)), Some(750));
    assert_eq!(s.position_minor(&brand("gym")), None);
    // The order of the lines does not matter.
    let mut reversed = lines.to_vec();
    reversed.reverse();
    assert_eq!(compute(&terms(), day(0), &reversed).unwrap(), s);
}

#[test]
fn an_empty_period_has_a_zero_statement_owed_by_the_first_brand() {
    let s = compute(&terms(), day(2), &[line(AIR, "r1", None, 5, 10, 0)]).unwrap();
    assert_eq!(s.lines, 0);
    assert_eq!(
        s.net,
        Net {
            payer: brand(AIR),
            payee: brand(COFFEE),
            amount_minor: 0
        }
    );
    assert_eq!(s.position_minor(&brand(AIR)), Some(0));
    assert!(s.gross.iter().all(|g| g.total_minor == 0 && g.lines == 0));
}

#[test]
fn refunds_of_earlier_redemptions_can_make_a_direction_negative() {
    // Coffee's points were redeemed at air yesterday; today air refunds 300: air owes coffee.
    let lines = [
        line(COFFEE, "r1", None, 1_000, DAY - 1, 0),
        line(COFFEE, "r1", Some("x1"), -300, DAY + 5, 1),
    ];
    let s = compute(&terms(), day(1), &lines).unwrap();
    assert_eq!(s.gross[1].obligations_minor, 0);
    assert_eq!(s.gross[1].refunds_minor, 300);
    assert_eq!(s.gross[1].total_minor, -300);
    assert_eq!((s.net.payer.as_str(), s.net.amount_minor), (AIR, 300));
}

#[test]
fn each_discrepancy_is_reported_with_its_kind() {
    let p = day(1);
    let ours = [
        line(AIR, "matched", None, 100, DAY + 1, 10),
        line(AIR, "only-ours", None, 200, DAY + 2, 11),
        line(COFFEE, "amount", None, 300, DAY + 3, 12),
        line(AIR, "late-there", None, 400, 2 * DAY - 1, 13),
        line(AIR, "early-here", None, 500, DAY - 1, 14),
        line(AIR, "both-outside", None, 600, 5, 15),
        line(AIR, "only-ours-outside", None, 700, 2 * DAY, 16),
    ];
    let theirs = [
        line(AIR, "matched", None, 100, DAY + 1, 20),
        line(COFFEE, "only-theirs", None, 250, DAY + 9, 21),
        line(COFFEE, "amount", None, 301, DAY + 3, 22),
        line(AIR, "late-there", None, 400, 2 * DAY, 23),
        line(AIR, "early-here", None, 500, DAY, 24),
        line(AIR, "both-outside", None, 600, 6, 25),
    ];
    let r = reconcile(&terms(), p, &ours, &theirs).unwrap();
    assert!(!r.agreed);
    let expect = [
        (AIR, "matched", LineStatus::Matched),
        (AIR, "only-ours", LineStatus::MissingTheirs),
        (COFFEE, "only-theirs", LineStatus::MissingOurs),
        (COFFEE, "amount", LineStatus::AmountDiffers),
        (AIR, "late-there", LineStatus::CutOff),
        (AIR, "early-here", LineStatus::CutOff),
    ];
    assert_eq!(r.lines.len(), expect.len());
    for (payer, id, status) in expect {
        assert_eq!(status_of(&r, payer, id, None), status, "{id}");
    }
    // Each line carries both sides' indexes, times and amounts, `None` where missing.
    let amount = r
        .lines
        .iter()
        .find(|l| l.redemption.as_str() == "amount")
        .unwrap();
    assert_eq!(
        *amount,
        ReconciledLine {
            status: LineStatus::AmountDiffers,
            payer: brand(COFFEE),
            payee: brand(AIR),
            redemption: "amount".parse().unwrap(),
            refund: None,
            index_ours: Some(LogIndex::new(12).unwrap()),
            index_theirs: Some(LogIndex::new(22).unwrap()),
            time_ours: Some(t(DAY + 3)),
            time_theirs: Some(t(DAY + 3)),
            amount_ours_minor: Some(300),
            amount_theirs_minor: Some(301),
        }
    );
    let missing = r
        .lines
        .iter()
        .find(|l| l.redemption.as_str() == "only-theirs")
        .unwrap();
    assert_eq!(
        (missing.index_ours, missing.index_theirs),
        (None, Some(LogIndex::new(21).unwrap()))
    );
    assert_eq!(
        (missing.amount_ours_minor, missing.amount_theirs_minor),
        (None, Some(250))
    );
    // Lines are in key order: payer, then redemption, then refund.
    let keys: Vec<(&str, &str)> = r
        .lines
        .iter()
        .map(|l| (l.payer.as_str(), l.redemption.as_str()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    // Each statement is that side's own.
    assert_eq!(r.ours, compute(&terms(), p, &ours).unwrap());
    assert_eq!(r.theirs, compute(&terms(), p, &theirs).unwrap());
    assert_eq!(r.count(LineStatus::CutOff), 2);
}

#[test]
fn a_cut_off_is_reported_as_such_even_when_the_amounts_differ_too() {
    let ours = [line(AIR, "r1", None, 100, DAY - 1, 0)];
    let theirs = [line(AIR, "r1", None, 101, DAY, 0)];
    for p in [day(0), day(1)] {
        let r = reconcile(&terms(), p, &ours, &theirs).unwrap();
        assert_eq!(status_of(&r, AIR, "r1", None), LineStatus::CutOff);
    }
    // Outside the period on both sides, it is no part of the report.
    let r = reconcile(&terms(), day(2), &ours, &theirs).unwrap();
    assert!(r.agreed && r.lines.is_empty());
}

#[test]
fn lines_match_by_payer_redemption_and_refund() {
    let ours = [
        line(AIR, "r1", None, 100, 1, 0),
        line(COFFEE, "r1", None, 100, 2, 1),
        line(AIR, "r1", Some("x1"), -40, 3, 2),
        line(AIR, "r1", Some("x2"), -10, 4, 3),
    ];
    let theirs = [
        line(AIR, "r1", Some("x2"), -10, 4, 7),
        line(AIR, "r1", None, 100, 1, 8),
    ];
    let r = reconcile(&terms(), day(0), &ours, &theirs).unwrap();
    assert_eq!(status_of(&r, AIR, "r1", None), LineStatus::Matched);
    assert_eq!(status_of(&r, COFFEE, "r1", None), LineStatus::MissingTheirs);
    assert_eq!(
        status_of(&r, AIR, "r1", Some("x1")),
        LineStatus::MissingTheirs
    );
    assert_eq!(status_of(&r, AIR, "r1", Some("x2")), LineStatus::Matched);
    // The commit's obligation comes before its refunds.
    let order: Vec<Option<&str>> = r
        .lines
        .iter()
        .filter(|l| l.payer.as_str() == AIR)
        .map(|l| l.refund.as_ref().map(|x| x.as_str()))
        .collect();
    assert_eq!(order, [None, Some("x1"), Some("x2")]);
}

#[test]
fn matching_lines_agree_on_one_statement() {
    let ours = [
        line(AIR, "r1", None, 100, 1, 0),
        line(COFFEE, "r2", None, 30, 2, 1),
    ];
    let theirs = [
        line(COFFEE, "r2", None, 30, 2, 4),
        line(AIR, "r1", None, 100, 1, 9),
    ];
    let r = reconcile(&terms(), day(0), &ours, &theirs).unwrap();
    assert!(r.agreed);
    assert_eq!(r.ours, r.theirs);
    assert_eq!(r.count(LineStatus::Matched), 2);
    let empty = reconcile(&terms(), day(0), &[], &[]).unwrap();
    assert!(empty.agreed && empty.lines.is_empty());
}

#[test]
fn invalid_lines_are_refused_naming_their_side() {
    let mut one_way = terms();
    one_way.directions.truncate(1);
    let good = line(AIR, "ok", None, 1, 1, 0);
    let cases = [
        (one_way.clone(), line(COFFEE, "r1", None, 5, 1, 3)),
        (terms(), line(AIR, "r1", None, 0, 1, 3)),
        (terms(), line(AIR, "r1", None, -5, 1, 3)),
        (terms(), line(AIR, "r1", Some("x1"), 5, 1, 3)),
        (terms(), line(AIR, "r1", Some("x1"), 0, 1, 3)),
        (terms(), line(AIR, "r1", None, MAX_AMOUNT as i64 + 1, 1, 3)),
        (terms(), line(AIR, "r1", Some("x1"), i64::MIN, 1, 3)),
        (terms(), {
            let mut l = line(AIR, "r1", None, 5, 1, 3);
            l.payee = brand("gym");
            l
        }),
    ];
    for (i, (terms, bad)) in cases.into_iter().enumerate() {
        let e = compute(&terms, day(0), &[good.clone(), bad.clone()]).unwrap_err();
        assert_eq!(e.code(), "statement_invalid_line", "case {i}");
        let e = reconcile(&terms, day(0), std::slice::from_ref(&good), &[bad]).unwrap_err();
        match e {
            StatementError::InvalidLine { side, index, .. } => {
                assert_eq!((side, index.get()), (Some(Side::Theirs), 3), "case {i}");
            }
            e => panic!("case {i}: {e}"),
        }
    }
    // The extremes are allowed.
    let extremes = [
        line(AIR, "r1", None, MAX_AMOUNT as i64, 1, 0),
        line(AIR, "r1", Some("x1"), -(MAX_AMOUNT as i64), 1, 1),
    ];
    compute(&terms(), day(0), &extremes).unwrap();
}

#[test]
fn a_key_twice_in_one_list_is_refused() {
    let lines = [
        line(AIR, "r1", None, 5, 1, 3),
        line(AIR, "r1", None, 6, DAY * 9, 8),
    ];
    assert_eq!(
        reconcile(&terms(), day(0), &lines, &[]).unwrap_err(),
        StatementError::DuplicateLine {
            side: Some(Side::Ours),
            payer: brand(AIR),
            redemption: "r1".parse().unwrap(),
            refund: None,
            first: LogIndex::new(3).unwrap(),
            second: LogIndex::new(8).unwrap(),
        }
    );
    assert_eq!(
        compute(&terms(), day(0), &lines).unwrap_err().code(),
        "statement_duplicate_line"
    );
}

#[test]
fn totals_beyond_2_pow_53_are_refused_whatever_the_order() {
    let max = MAX_AMOUNT as i64;
    let code = |lines: &[ObligationLine]| compute(&terms(), day(0), lines).map_err(|e| e.code());
    // Two obligations in one direction.
    let two = [
        line(AIR, "r1", None, max, 1, 0),
        line(AIR, "r2", None, 1, 2, 1),
    ];
    assert_eq!(code(&two), Err("statement_overflow"));
    // The refund would bring the total back, but the obligations alone exceed the bound.
    let back = [
        two[0].clone(),
        line(AIR, "r1", Some("x"), -1, 3, 2),
        two[1].clone(),
    ];
    assert_eq!(code(&back), Err("statement_overflow"));
    // Netting a full direction against a fully refunded other direction.
    let net = [
        line(AIR, "r1", None, max, 1, 0),
        line(COFFEE, "r1", Some("x"), -max, 1, 1),
    ];
    assert_eq!(code(&net), Err("statement_overflow"));
    assert_eq!(
        reconcile(&terms(), day(0), &[], &net).unwrap_err(),
        StatementError::Overflow {
            side: Some(Side::Theirs)
        }
    );
    // At the bound exactly, it is fine.
    let s = compute(&terms(), day(0), &[line(AIR, "r1", None, max, 1, 0)]).unwrap();
    assert_eq!(s.net.amount_minor, MAX_AMOUNT);
}

#[test]
fn more_than_lines_max_lines_are_refused() {
    let lines = vec![line(AIR, "r1", None, 5, 1, 3); LINES_MAX + 1];
    assert_eq!(
        reconcile(&terms(), day(0), &[], &lines).unwrap_err(),
        StatementError::TooManyLines {
            side: Some(Side::Theirs),
            count: LINES_MAX + 1,
            max: LINES_MAX
        }
    );
}

#[test]
fn invalid_terms_are_refused() {
    let mut bad = terms();
    bad.brands[1] = bad.brands[0].clone();
    assert_eq!(
        compute(&bad, day(0), &[]).unwrap_err().code(),
        "statement_invalid_terms"
    );
    assert_eq!(
        reconcile(&bad, day(0), &[], &[]).unwrap_err().code(),
        "statement_invalid_terms"
    );
}

#[test]
fn error_codes_are_stable() {
    let id: EntryId = "r".parse().unwrap();
    let i = LogIndex::new(0).unwrap();
    let errors = [
        StatementError::InvalidTerms(AgreementError::InvalidTerms("x")),
        StatementError::InvalidPeriod { from: 1, to: 1 },
        StatementError::PeriodOutOfRange { k: 1 },
        StatementError::TooManyLines {
            side: None,
            count: 2,
            max: 1,
        },
        StatementError::InvalidLine {
            side: None,
            index: i,
            redemption: id.clone(),
            reason: "x",
        },
        StatementError::DuplicateLine {
            side: Some(Side::Ours),
            payer: brand(AIR),
            redemption: id,
            refund: Some("x".parse().unwrap()),
            first: i,
            second: i,
        },
        StatementError::Overflow { side: None },
    ];
    let codes: Vec<&str> = errors.iter().map(|e| e.code()).collect();
    assert_eq!(
        codes,
        [
            "statement_invalid_terms",
            "statement_invalid_period",
            "statement_period_out_of_range",
            "statement_too_many_lines",
            "statement_invalid_line",
            "statement_duplicate_line",
            "statement_overflow",
        ]
    );
    assert_eq!(
        errors[5].to_string(),
        "two lines in our lines at indexes 0 and 0 have the same key (payer air, redemption r, refund x)"
    );
}

#[test]
fn the_csv_has_a_header_and_one_crlf_row_per_line() {
    let ours = [
        line(AIR, "r1", None, 100, DAY + 1, 10),
        line(AIR, "r1", Some("x1"), -20, DAY + 2, 11),
    ];
    let theirs = [
        line(AIR, "r1", None, 100, DAY + 1, 20),
        line(COFFEE, "r9", None, 7, 2 * DAY, 21),
        line(COFFEE, "r8", None, 5, DAY + 9, 22),
    ];
    let r = reconcile(&terms(), day(1), &ours, &theirs).unwrap();
    assert_eq!(
        to_csv(&r),
        concat!(
            "status,payer,payee,redemption,refund,index_ours,index_theirs,time_ours,time_theirs,",
            "amount_ours_minor,amount_theirs_minor\r\n",
            "matched,air,coffee,r1,,10,20,86400001,86400001,100,100\r\n",
            "missing_theirs,air,coffee,r1,x1,11,,86400002,,-20,\r\n",
            "missing_ours,coffee,air,r8,,,22,,86400009,,5\r\n",
        )
    );
    let empty = reconcile(&terms(), day(1), &[], &[]).unwrap();
    assert_eq!(to_csv(&empty), format!("{CSV_HEADER}\r\n"));
}

#[test]
fn csv_fields_are_quoted_as_rfc_4180_requires() {
    let quoted = |f: &str| {
        let mut s = String::new();
        csv_field(&mut s, f);
        s
    };
    assert_eq!(quoted("air-1.x:y_z"), "air-1.x:y_z");
    assert_eq!(quoted(""), "");
    assert_eq!(quoted("a,b"), "\"a,b\"");
    assert_eq!(quoted("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(quoted("a\r\nb"), "\"a\r\nb\"");
}

#[test]
fn the_report_round_trips_through_json() {
    let ours = [
        line(AIR, "r1", None, 100, 1, 0),
        line(AIR, "r1", Some("x"), -1, 2, 1),
    ];
    let theirs = [line(COFFEE, "r2", None, 3, 4, 0)];
    let r = reconcile(&terms(), day(0), &ours, &theirs).unwrap();
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains(r#""status":"missing_ours""#), "{json}");
    assert!(json.contains(r#""index_ours":null"#), "{json}");
    assert_eq!(serde_json::from_str::<Reconciliation>(&json).unwrap(), r);
    let extra = json.replacen('{', r#"{"extra":1,"#, 1);
    assert!(serde_json::from_str::<Reconciliation>(&extra).is_err());
    // Lines, too, have one JSON form.
    let l = serde_json::to_string(&ours[1]).unwrap();
    assert_eq!(
        l,
        r#"{"redemption":"r1","refund":"x","payer":"air","payee":"coffee","amount_minor":-1,"time":2,"index":1}"#
    );
    assert_eq!(serde_json::from_str::<ObligationLine>(&l).unwrap(), ours[1]);
}

/// The lines of a day's redemptions in both directions as each brand logs them: the payer's
/// entry, and the payee's side recording the payer's log time.
struct Day {
    air: Vec<ObligationLine>,
    coffee: Vec<ObligationLine>,
}

fn busy_day(per_direction: u64) -> Day {
    let mut air = Vec::new();
    let mut coffee = Vec::new();
    for i in 0..2 * per_direction {
        let payer = if i % 2 == 0 { AIR } else { COFFEE };
        let time = DAY + (i * 7_919) % DAY;
        let amount = (i % 9_973 + 1) as i64;
        let id = format!("r{i}");
        let mut lines = vec![line(payer, &id, None, amount, time, 0)];
        if i % 20 == 0 {
            lines.push(line(
                payer,
                &id,
                Some(&format!("x{i}")),
                -amount / 2 - 1,
                time + 1,
                0,
            ));
        }
        for mut l in lines {
            l.index = LogIndex::new(air.len() as u64).unwrap();
            air.push(l.clone());
            l.index = LogIndex::new(coffee.len() as u64 + 1_000_000).unwrap();
            coffee.push(l);
        }
    }
    Day { air, coffee }
}

#[test]
fn a_day_of_ten_thousand_redemptions_each_way_reconciles_and_finds_every_discrepancy() {
    let terms = terms();
    let p = day(1);
    let Day { air, coffee } = busy_day(12_000);
    assert!(air.len() > 24_000);
    // Each brand reconciles its own log against its mirror of the other's.
    let at_air = reconcile(&terms, p, &air, &coffee).unwrap();
    let at_coffee = reconcile(&terms, p, &coffee, &air).unwrap();
    assert!(at_air.agreed && at_coffee.agreed);
    assert_eq!(at_air.lines.len(), air.len());
    assert_eq!(
        signing_message(&at_air.ours),
        signing_message(&at_coffee.ours)
    );
    assert!(at_air.ours.gross.iter().all(|g| g.lines >= 12_000));
    assert_eq!(
        at_air.ours.position_minor(&brand(AIR)).unwrap(),
        -at_coffee.ours.position_minor(&brand(COFFEE)).unwrap()
    );

    // A missing line on each side, an amount changed, a line across the boundary.
    let mut ours = air.clone();
    let mut theirs = coffee.clone();
    let dropped_ours = ours.remove(100);
    let dropped_theirs = theirs.remove(2_000);
    theirs[3_000].amount_minor += 1;
    ours[4_000].time = p.to();
    let r = reconcile(&terms, p, &ours, &theirs).unwrap();
    assert!(!r.agreed);
    let odd: Vec<(&str, LineStatus)> = r
        .lines
        .iter()
        .filter(|l| l.status != LineStatus::Matched)
        .map(|l| (l.redemption.as_str(), l.status))
        .collect();
    let mut expected = vec![
        (dropped_ours.redemption.as_str(), LineStatus::MissingOurs),
        (
            dropped_theirs.redemption.as_str(),
            LineStatus::MissingTheirs,
        ),
        (theirs[3_000].redemption.as_str(), LineStatus::AmountDiffers),
        (ours[4_000].redemption.as_str(), LineStatus::CutOff),
    ];
    expected.sort_by_key(|(id, _)| {
        r.lines
            .iter()
            .position(|l| l.redemption.as_str() == *id && l.status != LineStatus::Matched)
    });
    assert_eq!(odd, expected);
    assert_eq!(r.count(LineStatus::Matched), air.len() - 4);
}

// --- Property tests ---------------------------------------------------------------------------

/// A key as the tests name it: payer, redemption, refund.
type Key = (String, String, Option<String>);

fn key_of(l: &ObligationLine) -> Key {
    (
        l.payer.to_string(),
        l.redemption.to_string(),
        l.refund.as_ref().map(|r| r.to_string()),
    )
}

/// What both logs recorded: each event is one line, at the payer's log time.
#[derive(Debug, Clone)]
struct Event {
    payer: &'static str,
    redemption: u16,
    refund: Option<u8>,
    magnitude: u64,
    time: u64,
}

fn time_near_period_one() -> impl Strategy<Value = u64> {
    prop_oneof![0..3 * DAY, DAY - 3..DAY + 3, 2 * DAY - 3..2 * DAY + 3,]
}

fn events() -> impl Strategy<Value = Vec<Event>> {
    let event = (
        any::<bool>(),
        0u16..60,
        prop::option::weighted(0.3, 0u8..4),
        1u64..1_000_000_000,
        time_near_period_one(),
    )
        .prop_map(|(a, redemption, refund, magnitude, time)| Event {
            payer: if a { AIR } else { COFFEE },
            redemption,
            refund,
            magnitude,
            time,
        });
    prop::collection::vec(event, 0..80).prop_map(|es| {
        let mut seen = BTreeSet::new();
        es.into_iter()
            .filter(|e| seen.insert((e.payer, e.redemption, e.refund)))
            .collect()
    })
}

fn to_line(e: &Event, index: u64) -> ObligationLine {
    let amount = e.magnitude as i64;
    let refund = e.refund.map(|r| format!("x{r}"));
    let amount = if refund.is_some() { -amount } else { amount };
    line(
        e.payer,
        &format!("r{}", e.redemption),
        refund.as_deref(),
        amount,
        e.time,
        index,
    )
}

/// Both brands' own logs: the same lines at different indexes, in different orders.
fn logs(events: &[Event]) -> (Vec<ObligationLine>, Vec<ObligationLine>) {
    let air = events
        .iter()
        .enumerate()
        .map(|(i, e)| to_line(e, i as u64))
        .collect();
    let coffee = events
        .iter()
        .enumerate()
        .rev()
        .map(|(i, e)| to_line(e, 500 + 3 * i as u64))
        .collect();
    (air, coffee)
}

/// The report as seen from the other side: ours and theirs swapped.
fn swapped(r: &Reconciliation) -> Vec<ReconciledLine> {
    r.lines
        .iter()
        .map(|l| ReconciledLine {
            status: match l.status {
                LineStatus::MissingOurs => LineStatus::MissingTheirs,
                LineStatus::MissingTheirs => LineStatus::MissingOurs,
                s => s,
            },
            index_ours: l.index_theirs,
            index_theirs: l.index_ours,
            time_ours: l.time_theirs,
            time_theirs: l.time_ours,
            amount_ours_minor: l.amount_theirs_minor,
            amount_theirs_minor: l.amount_ours_minor,
            ..l.clone()
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Injection {
    DropOurs,
    DropTheirs,
    ChangeAmount { theirs: bool, magnitude: u64 },
    MoveAcross { theirs: bool, offset: u64 },
}

fn injection() -> impl Strategy<Value = Injection> {
    prop_oneof![
        Just(Injection::DropOurs),
        Just(Injection::DropTheirs),
        (any::<bool>(), 1u64..1_000_000_000)
            .prop_map(|(theirs, magnitude)| Injection::ChangeAmount { theirs, magnitude }),
        (any::<bool>(), 0u64..2 * DAY)
            .prop_map(|(theirs, offset)| Injection::MoveAcross { theirs, offset }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Lines sum to the statement: per direction, the gross is the sum of the matched lines in
    /// that direction (obligations and refunds apart) and the net is the difference; and for
    /// any one list, the statement is the sum of its lines in the period.
    #[test]
    fn lines_sum_to_the_statement(events in events()) {
        let (air, coffee) = logs(&events);
        let p = day(1);
        let r = reconcile(&terms(), p, &air, &coffee).unwrap();
        prop_assert!(r.agreed);
        let mut totals: BTreeMap<&str, (i128, i128, u64)> = BTreeMap::new();
        for l in &r.lines {
            prop_assert_eq!(l.status, LineStatus::Matched);
            let a = i128::from(l.amount_ours_minor.unwrap());
            let s = totals.entry(l.payer.as_str()).or_default();
            if a > 0 { s.0 += a } else { s.1 -= a }
            s.2 += 1;
        }
        for g in &r.ours.gross {
            let (o, f, n) = totals.get(g.payer.as_str()).copied().unwrap_or_default();
            prop_assert_eq!(i128::from(g.obligations_minor), o);
            prop_assert_eq!(i128::from(g.refunds_minor), f);
            prop_assert_eq!(i128::from(g.total_minor), o - f);
            prop_assert_eq!(g.lines, n);
        }
        let owed_by_air = i128::from(r.ours.gross[0].total_minor) - i128::from(r.ours.gross[1].total_minor);
        prop_assert_eq!(i128::from(r.ours.position_minor(&brand(AIR)).unwrap()), -owed_by_air);
        prop_assert_eq!(r.ours.lines as usize, r.lines.len());
        // Independently of any reconciliation, one list's statement sums its lines in the period.
        let in_period: i128 = air
            .iter()
            .filter(|l| p.contains(l.time))
            .map(|l| if l.payer.as_str() == AIR { 1 } else { -1 } * i128::from(l.amount_minor))
            .sum();
        let s = compute(&terms(), p, &air).unwrap();
        prop_assert_eq!(i128::from(s.position_minor(&brand(COFFEE)).unwrap()), in_period);
    }

    /// Payable equals minus receivable: from consistent logs, the statement air computes (its
    /// own log, its mirror of coffee) is byte for byte the one coffee computes (its own log,
    /// its mirror of air), the two positions are additive inverses, and the two reports are
    /// each other's mirror image.
    #[test]
    fn payable_equals_minus_receivable(events in events(), k in 0u64..3) {
        let (air, coffee) = logs(&events);
        let at_air = reconcile(&terms(), day(k), &air, &coffee).unwrap();
        let at_coffee = reconcile(&terms(), day(k), &coffee, &air).unwrap();
        prop_assert!(at_air.agreed && at_coffee.agreed);
        prop_assert_eq!(&at_air.ours, &at_coffee.ours);
        prop_assert_eq!(signing_message(&at_air.ours), signing_message(&at_coffee.ours));
        let air_position = at_air.ours.position_minor(&brand(AIR)).unwrap();
        let coffee_position = at_coffee.ours.position_minor(&brand(COFFEE)).unwrap();
        prop_assert_eq!(air_position, -coffee_position);
        // Air's payable to coffee is coffee's receivable from air, and back.
        prop_assert_eq!(&at_air.ours.gross, &at_coffee.theirs.gross);
        prop_assert_eq!(swapped(&at_air), at_coffee.lines);
    }

    /// Every injected discrepancy (a line dropped on either side, an amount changed, a line
    /// moved across a boundary) is reported with its kind, and nothing else is.
    #[test]
    fn every_injected_discrepancy_is_reported_and_nothing_else(
        events in events(),
        injections in prop::collection::vec((any::<prop::sample::Index>(), injection()), 0..6),
    ) {
        let p = day(1);
        let (mut ours, mut theirs) = logs(&events);
        // Pair each event's two lines; inject on distinct events.
        let mut expected: BTreeMap<Key, LineStatus> = BTreeMap::new();
        let mut dropped_ours = BTreeSet::new();
        let mut dropped_theirs = BTreeSet::new();
        for (which, inj) in injections {
            if events.is_empty() {
                break;
            }
            let i = which.index(events.len());
            let key = key_of(&ours[i]);
            if expected.contains_key(&key) {
                continue;
            }
            let j = theirs.iter().position(|l| key_of(l) == key).unwrap();
            let inside = p.contains(ours[i].time);
            let status = match inj {
                _ if !inside && !matches!(inj, Injection::MoveAcross { .. }) => continue,
                Injection::DropOurs => {
                    dropped_ours.insert(i);
                    LineStatus::MissingOurs
                }
                Injection::DropTheirs => {
                    dropped_theirs.insert(j);
                    LineStatus::MissingTheirs
                }
                Injection::ChangeAmount { theirs: on_theirs, magnitude } => {
                    let l = if on_theirs { &mut theirs[j] } else { &mut ours[i] };
                    let old = l.amount_minor.unsigned_abs();
                    let new = if magnitude == old { magnitude + 1 } else { magnitude } as i64;
                    l.amount_minor = new * l.amount_minor.signum();
                    LineStatus::AmountDiffers
                }
                Injection::MoveAcross { theirs: on_theirs, offset } => {
                    let l = if on_theirs { &mut theirs[j] } else { &mut ours[i] };
                    let moved = if inside {
                        // Before or after the period.
                        if offset % 2 == 0 { p.from().get() - 1 - offset / 2 % DAY } else { p.to().get() + offset / 2 }
                    } else {
                        p.from().get() + offset % DAY
                    };
                    l.time = t(moved);
                    prop_assert_ne!(p.contains(l.time), inside);
                    LineStatus::CutOff
                }
            };
            expected.insert(key, status);
        }
        let ours: Vec<ObligationLine> = ours.into_iter().enumerate().filter(|(i, _)| !dropped_ours.contains(i)).map(|(_, l)| l).collect();
        let theirs: Vec<ObligationLine> = theirs.into_iter().enumerate().filter(|(j, _)| !dropped_theirs.contains(j)).map(|(_, l)| l).collect();

        let r = reconcile(&terms(), p, &ours, &theirs).unwrap();
        prop_assert_eq!(r.agreed, expected.is_empty());
        let reported: BTreeMap<Key, LineStatus> = r
            .lines
            .iter()
            .map(|l| ((l.payer.to_string(), l.redemption.to_string(), l.refund.as_ref().map(|x| x.to_string())), l.status))
            .collect();
        let mut want: BTreeMap<Key, LineStatus> = events
            .iter()
            .map(|e| to_line(e, 0))
            .filter(|l| p.contains(l.time))
            .map(|l| (key_of(&l), LineStatus::Matched))
            .collect();
        want.extend(expected);
        prop_assert_eq!(reported, want);
        prop_assert_eq!(&r.ours, &compute(&terms(), p, &ours).unwrap());
        prop_assert_eq!(&r.theirs, &compute(&terms(), p, &theirs).unwrap());
        // The partner, reading the same two logs the other way round, sees the mirror image.
        let back = reconcile(&terms(), p, &theirs, &ours).unwrap();
        prop_assert_eq!(swapped(&r), back.lines);
    }

    /// Settlement periods tile log time from the origin, each exactly the times that
    /// `period_of` maps to its number.
    #[test]
    fn settlement_periods_tile_log_time(origin in 0u64..1 << 40, len in 1u64..1 << 36, k in 0u64..1 << 12) {
        let mut terms = terms();
        terms.period_origin = t(origin);
        terms.period_ms = DurationMs::new(len).unwrap();
        let p = period_bounds(&terms, k).unwrap();
        let next = period_bounds(&terms, k + 1).unwrap();
        prop_assert_eq!(p.to(), next.from());
        prop_assert_eq!(p.to().get() - p.from().get(), len);
        prop_assert_eq!(terms.period_of(p.from()), Some(k));
        prop_assert_eq!(terms.period_of(t(p.to().get() - 1)), Some(k));
        prop_assert_eq!(p.settlement_index(&terms), Some(k));
    }
}
