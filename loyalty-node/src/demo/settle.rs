//! The end of the demo's day: the settlement statements co-signed once their periods ended,
//! the reconciliation over every line, and an auditor's check of every log.
//!
//! Invariant: a statement is asked for only after its period has ended by the system clock
//! (which both nodes read), and after each node's mirror of the other holds the other's whole
//! log; the demo never shifts a clock.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context, Result};

use super::report::{AgreementReport, ObligationReport, StatementReport};
use super::steps::{expect, id, money, parse, wait_mirrored, wait_past, Narrator};
use super::{now_ms, utc_time, Federation, COFFEE};

/// One obligation line the scenario caused: a commit (positive) or a refund (negative), at the
/// log time of the payer's entry.
pub struct Line {
    pub agreement: &'static str,
    pub time: u64,
    pub amount_minor: i64,
}

/// The agreement named `name`.
fn agreement<'a>(agreements: &'a [AgreementReport], name: &str) -> Result<&'a AgreementReport> {
    agreements
        .iter()
        .find(|a| a.agreement == name)
        .ok_or_else(|| anyhow!("no demo agreement {name}"))
}

/// Waits for the settlement periods holding `lines` to end, then has coffee (the payee of every
/// demo agreement) co-sign each such period's statement with the payer, and checks the
/// statement against the lines and against what the payer logged.
pub async fn settle(
    say: &mut Narrator,
    fed: &Federation,
    agreements: &[AgreementReport],
    lines: &[Line],
) -> Result<Vec<StatementReport>> {
    say.step("Settle: co-sign the statement of the settlement period");
    // (agreement, period) → (lines, what the payer owes net).
    let mut periods: BTreeMap<(&str, u64), (u64, i64)> = BTreeMap::new();
    let mut last_end = 0;
    for l in lines {
        let a = agreement(agreements, l.agreement)?;
        let k = l
            .time
            .checked_sub(a.period_origin)
            .map(|d| d / a.period_ms)
            .ok_or_else(|| anyhow!("a line of {} before its first period", a.agreement))?;
        last_end = last_end.max(a.period_origin + (k + 1) * a.period_ms);
        let e = periods.entry((l.agreement, k)).or_default();
        e.0 += 1;
        e.1 += l.amount_minor;
    }
    let a0 = &agreements[0];
    let same = agreements
        .iter()
        .all(|a| (a.period_origin, a.period_ms) == (a0.period_origin, a0.period_ms));
    let ks: Vec<u64> = periods.keys().map(|(_, k)| *k).collect();
    if same && !ks.is_empty() && ks.iter().all(|k| *k == ks[0]) {
        let from = a0.period_origin + ks[0] * a0.period_ms;
        say.say(format!(
            "Every line above is in settlement period {} of its agreement: {}-{} UTC.",
            ks[0],
            utc_time(from),
            utc_time(from + a0.period_ms)
        ));
    } else {
        let list: Vec<String> = periods.keys().map(|(a, k)| format!("{a} {k}")).collect();
        say.say(format!(
            "The lines above fall in these settlement periods: {}.",
            list.join(", ")
        ));
    }
    say.say("A statement is signed only once its period has ended by both nodes' clocks:");
    say.say(format!(
        "waiting {:.1} s, until {} UTC (real clocks, nothing faked)...",
        last_end.saturating_sub(now_ms()) as f64 / 1000.0,
        utc_time(last_end)
    ));
    wait_past(last_end + 50).await;
    let coffee = fed.node(&COFFEE);
    let mut out = Vec::new();
    for ((name, k), (n_lines, net)) in &periods {
        let a = agreement(agreements, name)?;
        let payer = fed.node_of(&a.payer)?;
        wait_mirrored(coffee, payer).await?;
        wait_mirrored(payer, coffee).await?;
        let logged = coffee
            .client
            .statement(&parse(&a.payer)?, Some(&id(name)?), *k)
            .await
            .with_context(|| format!("co-sign {name} period {k} at coffee"))?;
        let st = &logged.statement.statement;
        let what = format!("statement of {name} period {k}");
        expect(&format!("{what}: lines"), st.lines, *n_lines)?;
        let (owes, owed) = if *net >= 0 {
            (a.payer.as_str(), a.payee.as_str())
        } else {
            (a.payee.as_str(), a.payer.as_str())
        };
        expect(
            &format!("{what}: net"),
            (
                st.net.payer.as_str(),
                st.net.payee.as_str(),
                st.net.amount_minor,
            ),
            (owes, owed, net.unsigned_abs()),
        )?;
        expect(
            &format!("{what}: signatures"),
            logged.statement.signatures.len(),
            2,
        )?;
        let at_payer = payer
            .client
            .statements(&parse(COFFEE.brand)?, Some(&id(name)?))
            .await
            .with_context(|| format!("{}'s statements with coffee", a.payer))?;
        let theirs = at_payer
            .iter()
            .find(|s| s.period == *k)
            .ok_or_else(|| anyhow!("{} did not log the {what}", a.payer))?;
        expect(
            &format!("{what} as {} logged it", a.payer),
            &theirs.statement,
            &logged.statement,
        )?;
        say.say(format!(
            "{name} period {k}: {n_lines} line{}; {} owes {} {} net;",
            if *n_lines == 1 { "" } else { "s" },
            st.net.payer,
            st.net.payee,
            money(st.currency.code(), st.net.amount_minor)
        ));
        say.say("  signed and logged by both, each checking it against its own lines.");
        out.push(StatementReport {
            agreement: name.to_string(),
            period: *k,
            from: st.period.from().get(),
            to: st.period.to().get(),
            currency: st.currency.code().to_owned(),
            lines: st.lines,
            net: serde_json::to_value(&st.net)?,
            index: BTreeMap::from([
                (COFFEE.brand.to_owned(), logged.receipt.index),
                (a.payer.clone(), theirs.receipt.index),
            ]),
        });
    }
    say.see(format!("{}/v1/statements/airline", coffee.url));
    say.see(format!("{}/explorer/settlement", coffee.url));
    Ok(out)
}

/// Checks, at both brands of each agreement, that the reconciliation over every line so far
/// agrees and nets to what the scenario expects.
pub async fn reconcile_all(
    fed: &Federation,
    agreements: &[AgreementReport],
    lines: &[Line],
) -> Result<Vec<ObligationReport>> {
    let to = now_ms() + 86_400_000;
    let mut out = Vec::new();
    for a in agreements {
        let mine: Vec<&Line> = lines
            .iter()
            .filter(|l| l.agreement == a.agreement)
            .collect();
        let net: i64 = mine.iter().map(|l| l.amount_minor).sum();
        for (me, partner) in [(&a.payer, &a.payee), (&a.payee, &a.payer)] {
            let r = fed
                .node_of(me)?
                .client
                .reconciliation(
                    &parse(partner)?,
                    Some(&id(&a.agreement)?),
                    a.period_origin,
                    to,
                )
                .await
                .with_context(|| format!("{me}'s reconciliation with {partner}"))?;
            let what = format!("{} reconciled at {me}", a.agreement);
            expect(&format!("{what}: agreed"), r.agreed, true)?;
            expect(&format!("{what}: lines"), r.lines.len(), mine.len())?;
            expect(
                &format!("{what}: net"),
                (r.ours.net.payer.as_str(), r.ours.net.amount_minor),
                (a.payer.as_str(), net.unsigned_abs()),
            )?;
        }
        out.push(ObligationReport {
            agreement: a.agreement.clone(),
            payer: a.payer.clone(),
            payee: a.payee.clone(),
            currency: a.settlement_currency.clone(),
            lines: mine.len() as u64,
            net_minor: net,
        });
    }
    Ok(out)
}

/// Verifies every node's whole log as an auditor would (`sdk::verify_log`, the check behind
/// `loyalty verify`).
pub async fn audit(say: &mut Narrator, fed: &Federation) -> Result<()> {
    say.step("An auditor checks every log");
    for n in &fed.nodes {
        let summary = sdk::verify_log(&n.client, &n.verifier(), sdk::VerifyOptions::default())
            .await
            .map_err(|e| anyhow!("{}'s log does not verify: {e}", n.brand()))?;
        say.say(format!(
            "{:<8} {} entries: signatures, Merkle roots and every balance replayed: OK",
            n.brand(),
            summary.entries
        ));
    }
    say.say("(the same check as `loyalty verify --node URL --log-key KEY`)");
    Ok(())
}
