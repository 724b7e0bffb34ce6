//! The checker's settlement part: obligations between each pair over the whole run, and the
//! co-signed statements of every settlement period with lines.

use std::collections::BTreeMap;
use std::time::Duration;

use super::checker::{Findings, Run};
use super::record::RedemptionState;
use super::{agreement_id, BRANDS, PERIOD_MS};
use crate::harness::now_ms;

/// Attempts to co-sign one statement (a mirror a moment behind answers `statement_disagreed`,
/// a partner busy with another statement `partner_refused`).
const STATEMENT_ATTEMPTS_MAX: u32 = 10;
/// The longest the checker waits for the last settlement period with lines to end.
const PERIOD_END_WAIT_MAX: Duration = Duration::from_secs(60);

/// The settlement periods with lines of each pair `(a, b)` (`a < b`), with their line counts.
pub type Periods = BTreeMap<(usize, usize), BTreeMap<u64, u64>>;

fn id(s: &str) -> sdk::EntryId {
    s.parse().expect("a valid entry id")
}

/// Checks each pair's reconciliation over the whole run on both sides (agreed, one statement,
/// opposite positions, equal to what the workload saw acknowledged); returns the periods with
/// lines.
pub async fn check_obligations(run: &Run<'_>, f: &mut Findings) -> Periods {
    let snap = run.record.snapshot();
    let to = now_ms() + 86_400_000;
    let mut periods = Periods::new();
    for a in 0..BRANDS.len() {
        for b in a + 1..BRANDS.len() {
            let agreement = agreement_id(a, b);
            let (ba, bb) = (&run.brands[a], &run.brands[b]);
            let ra = ba
                .client()
                .reconciliation(&bb.id(), Some(&id(&agreement)), 0, to)
                .await;
            let rb = bb
                .client()
                .reconciliation(&ba.id(), Some(&id(&agreement)), 0, to)
                .await;
            let (ra, rb) = match (ra, rb) {
                (Ok(ra), Ok(rb)) => (ra, rb),
                (ra, rb) => {
                    f.add(format!(
                        "{agreement}: no reconciliation: {:?} / {:?}",
                        ra.err(),
                        rb.err()
                    ));
                    continue;
                }
            };
            for (r, who) in [(&ra, ba), (&rb, bb)] {
                if !r.agreed {
                    let odd: Vec<_> = r
                        .lines
                        .iter()
                        .filter(|l| l.status != ledger::statement::LineStatus::Matched)
                        .take(10)
                        .collect();
                    f.add(format!(
                        "{agreement} at {}: the whole run's reconciliation is not agreed: {odd:?}",
                        who.brand
                    ));
                }
            }
            if ra.ours != rb.ours {
                f.add(format!(
                    "{agreement}: the two sides' statements differ: {:?} / {:?}",
                    ra.ours, rb.ours
                ));
            }
            let (pa, pb) = (
                ra.ours.position_minor(&ba.id()),
                rb.ours.position_minor(&bb.id()),
            );
            if pa.zip(pb).map(|(x, y)| x + y) != Some(0) {
                f.add(format!(
                    "{agreement}: net positions {pa:?} and {pb:?} are not opposite"
                ));
            }
            // What the workload saw acknowledged, direction by direction (a → b first, as in
            // the agreement's `brands`).
            for (k, (payer, payee)) in [(a, b), (b, a)].into_iter().enumerate() {
                let mut commits = (0u64, 0u64);
                let mut refunds = (0u64, 0u64);
                for r in snap
                    .redemptions
                    .values()
                    .filter(|r| r.payer == payer && r.payee == payee)
                {
                    if let RedemptionState::Committed(amount) = r.state {
                        commits.0 += amount;
                        commits.1 += 1;
                        for x in &r.refunds {
                            if let Some(m) = x.amount_minor.filter(|m| *m > 0) {
                                refunds.0 += m;
                                refunds.1 += 1;
                            }
                        }
                    }
                }
                let g = &ra.ours.gross[k];
                let got = (g.obligations_minor, g.refunds_minor, g.lines);
                let expected = (commits.0, refunds.0, commits.1 + refunds.1);
                if got != expected {
                    f.add(format!(
                        "{agreement}: {}→{} obligations, refunds and lines are {got:?} in the \
                         logs, {expected:?} by the acknowledged commits and refunds",
                        BRANDS[payer], BRANDS[payee]
                    ));
                }
            }
            let mut ks = BTreeMap::new();
            for l in &ra.lines {
                if let Some(t) = l.time_ours.or(l.time_theirs) {
                    let k = t.get().saturating_sub(run.origin) / PERIOD_MS;
                    *ks.entry(k).or_insert(0u64) += 1;
                }
            }
            periods.insert((a, b), ks);
        }
    }
    periods
}

/// Co-signs the statement of every period with lines (the two brands take turns to start),
/// once the last such period has ended, and checks that both logs hold the same statement,
/// with the period's lines. Returns how many were co-signed.
pub async fn cosign_statements(run: &Run<'_>, periods: &Periods, f: &mut Findings) -> usize {
    let Some(last) = periods.values().flat_map(|m| m.keys()).max() else {
        return 0;
    };
    let end = run.origin + (last + 1) * PERIOD_MS;
    let wait = Duration::from_millis((end + 1_000).saturating_sub(now_ms()));
    if wait > PERIOD_END_WAIT_MAX {
        f.add(format!(
            "settlement period {last} ends at {end}, more than {PERIOD_END_WAIT_MAX:?} away \
             (a line's time is far ahead of the clock)"
        ));
        return 0;
    }
    tokio::time::sleep(wait).await;
    let mut count = 0;
    for (&(a, b), ks) in periods {
        let agreement = agreement_id(a, b);
        let mut logged = BTreeMap::new();
        for (&k, &lines) in ks {
            let (from, to) = if k % 2 == 0 { (a, b) } else { (b, a) };
            let c = run.brands[from].client();
            let partner = run.brands[to].id();
            let mut attempt = 0;
            let answer = loop {
                attempt += 1;
                match c.statement(&partner, Some(&id(&agreement)), k).await {
                    Ok(s) => break Ok(s),
                    Err(_) if attempt < STATEMENT_ATTEMPTS_MAX => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => break Err(e),
                }
            };
            match answer {
                Ok(s) => {
                    if s.statement.statement.lines != lines || s.statement.signatures.len() != 2 {
                        f.add(format!(
                            "{agreement} period {k}: the statement has {} lines and {} \
                             signatures; the period has {lines} lines",
                            s.statement.statement.lines,
                            s.statement.signatures.len()
                        ));
                    }
                    logged.insert(k, s.statement);
                    count += 1;
                }
                Err(e) => f.add(format!(
                    "{agreement} period {k}: {} could not co-sign the statement: {e}",
                    BRANDS[from]
                )),
            }
        }
        for (me, other) in [(a, b), (b, a)] {
            let b_me = &run.brands[me];
            match b_me
                .client()
                .statements(&run.brands[other].id(), Some(&id(&agreement)))
                .await
            {
                Ok(list) => {
                    let by_period: BTreeMap<u64, _> =
                        list.into_iter().map(|s| (s.period, s)).collect();
                    for (k, st) in &logged {
                        match by_period.get(k) {
                            Some(s) if s.statement == *st => {
                                if let Err(e) = s.receipt.verify(&b_me.verifier) {
                                    f.add(format!(
                                        "{agreement} period {k} at {}: the receipt does not \
                                         verify: {e}",
                                        b_me.brand
                                    ));
                                }
                            }
                            other => f.add(format!(
                                "{agreement} period {k}: {} logged {other:?}, not the co-signed \
                                 statement",
                                b_me.brand
                            )),
                        }
                    }
                }
                Err(e) => f.add(format!("{agreement}: {}'s statements: {e}", b_me.brand)),
            }
        }
    }
    count
}
