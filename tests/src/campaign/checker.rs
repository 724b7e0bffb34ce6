//! The campaign's checker, in the style of a bank test: once every fault is healed and every
//! unfinished redemption resumed, it lets holds expire and sync catch up, and then checks
//! that
//!
//! 1. every acknowledged write is in its log, at the receipt's index, byte for byte, and no id
//!    is logged twice;
//! 2. every hold in every log is resolved exactly once (posted or voided; none open after its
//!    expiry and the node's release sweep), acknowledged posts and voids resolved the holds
//!    they named, and every redemption's recorded outcome is what the payer's and payee's logs
//!    show;
//! 3. obligations between each pair are additive inverses: the reconciliation of the whole run
//!    is agreed on both sides, with the same statement (so opposite net positions), equal to
//!    the sum of the commits and refunds the workload saw acknowledged ([`super::settlement`]);
//! 4. every settlement period with lines gets a statement co-signed and logged on both sides,
//!    equal to that period's lines;
//! 5. every mirror equals its origin: verified size equal to the partner's log size, the
//!    mirrored checkpoint's root equal to the origin's, no lag, no evidence, no freeze;
//! 6. every log passes `loyalty verify` (`sdk::verify_log`: signatures, tree, replay), every
//!    brand's accounts sum to zero (members' balances plus the replay's system accounts), no
//!    balance is negative, nothing is held, and each partner clearing account holds exactly
//!    the points of the committed redemptions less their refunds.
//!
//! Findings are gathered, not asserted one by one: the campaign fails once, with all of them
//! and the seed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::logs::{read_logs, LogCopy};
use super::record::{HoldEnd, Intent, Record, RedemptionState};
use super::{members, BrandInfo, Outcome, BRANDS};
use crate::harness::{now_ms, Node};

/// How long sync has to catch up once the faults are healed (a partner's sync backs off for up
/// to 30 s after failures).
pub const SYNC_LIMIT: Duration = Duration::from_secs(120);
/// The longest the checker waits for open holds to expire and be released.
pub const RELEASE_LIMIT: Duration = Duration::from_secs(120);
/// Most findings printed in the failure message.
const FINDINGS_SHOWN_MAX: usize = 60;

/// What the checker needs to know about the run.
pub struct Run<'a> {
    pub seed: u64,
    /// The agreements' period origin.
    pub origin: u64,
    pub nodes: &'a [Node],
    pub brands: &'a [BrandInfo],
    pub record: &'a Record,
}

/// The findings so far.
#[derive(Debug, Default)]
pub struct Findings(pub Vec<String>);

impl Findings {
    pub fn add(&mut self, f: impl Into<String>) {
        self.0.push(f.into());
    }
}

/// Runs every check; panics with the seed and every finding if there is any.
pub async fn check(run: Run<'_>, nemesis: BTreeMap<&'static str, u64>) -> Outcome {
    let mut f = Findings::default();
    let snap = run.record.snapshot();
    for v in &snap.violations {
        f.add(v.clone());
    }
    let mut logs = vec![LogCopy::default(); run.brands.len()];

    wait_for_releases(&run, &mut logs, &mut f).await;
    wait_for_sync(&run).await;
    let periods = super::settlement::check_obligations(&run, &mut f).await;
    let statements = super::settlement::cosign_statements(&run, &periods, &mut f).await;
    wait_for_sync(&run).await;
    read_logs(run.brands, &mut logs).await;

    let snap = run.record.snapshot();
    check_acked(&logs, &snap, &mut f);
    check_holds(&logs, &snap, &mut f);
    check_redemptions(&run, &logs, &snap, &mut f);
    check_mirrors(&run, &mut f).await;
    check_replay(&run, &logs, &snap, &mut f).await;

    if !f.0.is_empty() {
        let shown: Vec<&String> = f.0.iter().take(FINDINGS_SHOWN_MAX).collect();
        panic!(
            "campaign seed: {}: {} findings{}:\n - {}",
            run.seed,
            f.0.len(),
            if f.0.len() > shown.len() {
                format!(" (the first {})", shown.len())
            } else {
                String::new()
            },
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n - ")
        );
    }
    let redemptions = snap.redemptions.values();
    Outcome {
        seed: run.seed,
        acked_writes: snap.acked.len(),
        redemptions: snap.redemptions.len(),
        committed: redemptions
            .clone()
            .filter(|r| matches!(r.state, RedemptionState::Committed(_)))
            .count(),
        voided: redemptions
            .clone()
            .filter(|r| r.state == RedemptionState::Voided)
            .count(),
        refunds: redemptions
            .flat_map(|r| &r.refunds)
            .filter(|x| x.amount_minor.is_some())
            .count(),
        local_holds: snap.holds.len(),
        nemesis,
        statements,
        log_sizes: logs.iter().map(|l| l.entries.len() as u64).collect(),
        not_committed: snap
            .redemptions
            .values()
            .filter(|r| r.intent == Intent::Commit)
            .filter(|r| !matches!(r.state, RedemptionState::Committed(_)))
            .fold(BTreeMap::new(), |mut m, r| {
                let why = r.first_failure.as_deref().unwrap_or("none");
                // "<status> <code>: <detail>"; a partner's refusal names the partner's code
                // as "<partner> refused <what>: <code>: ...".
                let parts: Vec<&str> = why.split(':').map(str::trim).collect();
                let code = match parts.as_slice() {
                    [c, _, inner, ..] if c.ends_with("partner_refused") => format!("{c}/{inner}"),
                    [c, ..] => c.to_string(),
                    [] => why.to_owned(),
                };
                *m.entry(code).or_insert(0u64) += 1;
                m
            }),
        ops: snap.ops.clone(),
        errors: snap.errors.clone(),
        ..Outcome::default()
    }
}

/// Waits until no hold in any log is open: each is resolved by the workload or the resume, or
/// released by its node once it expired. A hold that stays open with an expiry too far away
/// to wait for is a finding.
async fn wait_for_releases(run: &Run<'_>, logs: &mut [LogCopy], f: &mut Findings) {
    let started = Instant::now();
    loop {
        read_logs(run.brands, logs).await;
        let mut open = Vec::new();
        for (b, l) in logs.iter().enumerate() {
            for (id, h) in l.holds() {
                if h.ends.is_empty() {
                    open.push((b, id, h.index, h.expires_at));
                }
            }
        }
        if open.is_empty() {
            return;
        }
        let latest = open.iter().map(|o| o.3).max().unwrap_or(0);
        let too_far = latest > now_ms() + RELEASE_LIMIT.as_millis() as u64;
        if too_far || started.elapsed() > RELEASE_LIMIT + Duration::from_secs(15) {
            for (b, id, index, expires_at) in open {
                f.add(format!(
                    "hold {id} (index {index}) at {} is still open at {} (expires at {expires_at})",
                    BRANDS[b],
                    now_ms()
                ));
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until every node mirrors every partner's whole log, twice in a row with the same
/// sizes (nothing is being written any more).
pub async fn wait_for_sync(run: &Run<'_>) {
    let started = Instant::now();
    let mut last: Option<Vec<u64>> = None;
    loop {
        let mut why = None;
        let mut sizes = Vec::new();
        for b in run.brands {
            match b.client().verified_checkpoint().await {
                Ok((cp, _)) => sizes.push(cp.size),
                Err(e) => why = Some(format!("{}'s checkpoint: {e}", b.brand)),
            }
        }
        if why.is_none() {
            'all: for b in run.brands {
                let partners = match b.client().partners().await {
                    Ok(p) => p,
                    Err(e) => {
                        why = Some(format!("{}'s partners: {e}", b.brand));
                        break;
                    }
                };
                for p in partners {
                    let j = BRANDS
                        .iter()
                        .position(|x| *x == p.brand.as_str())
                        .expect("a campaign brand");
                    if p.verified_size != sizes[j] {
                        why = Some(format!(
                            "{} mirrors {} of {} entries of {} (last error {:?})",
                            b.brand, p.verified_size, sizes[j], p.brand, p.last_error
                        ));
                        break 'all;
                    }
                }
            }
        }
        match why {
            None if last.as_ref() == Some(&sizes) => return,
            None => last = Some(sizes),
            Some(w) => {
                last = None;
                if started.elapsed() > SYNC_LIMIT {
                    panic!("sync did not catch up within {SYNC_LIMIT:?}: {w}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Finding 1: acknowledged writes are in the logs, byte for byte; no id twice in a log.
fn check_acked(logs: &[LogCopy], snap: &super::record::Inner, f: &mut Findings) {
    for a in &snap.acked {
        match logs[a.brand].entries.get(a.index as usize) {
            Some((text, _)) if *text == a.entry => {}
            Some((text, _)) => f.add(format!(
                "acknowledged {} {} at {} index {}: the log holds another entry there: {text} \
                 (acknowledged: {})",
                a.what, a.id, BRANDS[a.brand], a.index, a.entry
            )),
            None => f.add(format!(
                "acknowledged {} {} at {} index {} is beyond the log ({} entries)",
                a.what,
                a.id,
                BRANDS[a.brand],
                a.index,
                logs[a.brand].entries.len()
            )),
        }
    }
    for (b, l) in logs.iter().enumerate() {
        let mut seen = BTreeSet::new();
        for (i, (_, v)) in l.entries.iter().enumerate() {
            let id = v["id"].as_str().unwrap_or_default();
            if !seen.insert(id.to_owned()) {
                f.add(format!("{} logs id {id} twice (again at {i})", BRANDS[b]));
            }
        }
    }
}

/// Finding 2, holds: each resolved exactly once; acknowledged posts and voids are the
/// resolutions of their holds.
fn check_holds(logs: &[LogCopy], snap: &super::record::Inner, f: &mut Findings) {
    let holds: Vec<_> = logs.iter().map(LogCopy::holds).collect();
    for (b, hs) in holds.iter().enumerate() {
        for (id, h) in hs {
            if h.ends.len() != 1 {
                f.add(format!(
                    "hold {id} (index {}) at {} is resolved {} times: {:?}",
                    h.index,
                    BRANDS[b],
                    h.ends.len(),
                    h.ends
                ));
            }
        }
    }
    for (id, h) in &snap.holds {
        let at = &holds[h.brand];
        match at.get(id) {
            None if h.acked => f.add(format!(
                "acknowledged hold {id} is not a hold in {}'s log",
                BRANDS[h.brand]
            )),
            None => {}
            Some(x) if h.ended => {
                let kind = if h.intent == HoldEnd::Post {
                    "post"
                } else {
                    "void"
                };
                if !x.ends.iter().any(|e| e.kind == kind && e.id == h.end_id) {
                    f.add(format!(
                        "hold {id} at {}: its acknowledged {kind} {} did not resolve it: {:?}",
                        BRANDS[h.brand], h.end_id, x.ends
                    ));
                }
            }
            Some(_) => {}
        }
    }
}

/// Finding 2, redemptions: each recorded outcome is what the logs show.
fn check_redemptions(
    run: &Run<'_>,
    logs: &[LogCopy],
    snap: &super::record::Inner,
    f: &mut Findings,
) {
    let holds: Vec<_> = logs.iter().map(LogCopy::holds).collect();
    for r in snap.redemptions.values() {
        let (payer, payee) = (&logs[r.payer], &logs[r.payee]);
        let hold = holds[r.payer].get(&r.id);
        let obl = format!("sys.obl.{}", r.id);
        let resolved_by =
            |kind: &str| hold.is_some_and(|h| h.ends.len() == 1 && h.ends[0].kind == kind);
        let name = format!(
            "redemption {} ({}→{}, {} points)",
            r.id, BRANDS[r.payer], BRANDS[r.payee], r.points
        );
        match &r.state {
            RedemptionState::Committed(amount) => {
                if !resolved_by("post") {
                    f.add(format!(
                        "{name} committed, but the payer's hold is {hold:?}"
                    ));
                }
                match payer.index_of(&obl).map(|i| &payer.entries[i as usize].1) {
                    Some(v) if v["body"]["quote"]["amount_minor"] == *amount => {}
                    other => f.add(format!(
                        "{name} committed for {amount}, but the payer's payable is {other:?}"
                    )),
                }
                if payee.index_of(&obl).is_none() {
                    f.add(format!(
                        "{name} committed, but the payee logged no receivable"
                    ));
                }
            }
            RedemptionState::Voided => {
                if !resolved_by("void") {
                    f.add(format!("{name} voided, but the payer's hold is {hold:?}"));
                }
                if payer.index_of(&obl).is_some() || payee.index_of(&obl).is_some() {
                    f.add(format!("{name} voided, but an obligation is logged"));
                }
            }
            RedemptionState::NoHold => {
                if hold.is_some() {
                    f.add(format!(
                        "{name}: no hold, by the payer's answer, but its log holds {hold:?}"
                    ));
                }
            }
            RedemptionState::Unfinished(why) | RedemptionState::Stuck(why) => f.add(format!(
                "{name} could not be finished: {why}; the payer's log: {:?}; the payee's: {:?}; \
                 the payer's node said: {:?}; the payee's: {:?}",
                payer.mentions(&r.id),
                payee.mentions(&r.id),
                run.nodes[r.payer].log_lines_with(&r.id, 20),
                run.nodes[r.payee].log_lines_with(&r.id, 20)
            )),
        }
        for x in &r.refunds {
            if x.amount_minor.is_none() {
                f.add(format!(
                    "{name}: refund {} of {} points could not be finished: {:?}",
                    x.id, x.points, x.last_error
                ));
            }
        }
    }
}

/// Finding 5: every mirror equals its origin.
async fn check_mirrors(run: &Run<'_>, f: &mut Findings) {
    let m0: sdk::MemberId = members()[0].parse().expect("a member id");
    for b in run.brands {
        let c = b.client();
        let partners = match c.partners().await {
            Ok(p) => p,
            Err(e) => {
                f.add(format!("{}'s partners: {e}", b.brand));
                continue;
            }
        };
        for p in partners {
            let Some(origin) = run.brands.iter().find(|x| x.brand == p.brand.as_str()) else {
                f.add(format!("{} lists an unknown partner {}", b.brand, p.brand));
                continue;
            };
            let name = format!("{}'s mirror of {}", b.brand, origin.brand);
            if p.frozen || p.evidence > 0 || p.lag > 0 || !p.pinned {
                f.add(format!("{name}: {p:?}"));
            }
            let own = match origin.client().verified_checkpoint().await {
                Ok((cp, _)) => cp,
                Err(e) => {
                    f.add(format!("{}'s checkpoint: {e}", origin.brand));
                    continue;
                }
            };
            if p.verified_size != own.size || p.partner_size != own.size {
                f.add(format!(
                    "{name}: verified {} and seen {} of {} entries",
                    p.verified_size, p.partner_size, own.size
                ));
            }
            match c.partner_member(&origin.id(), &m0).await {
                Ok(m) => match m.verify(&origin.verifier) {
                    Ok(cp) if cp.size == own.size && cp.root == own.root => {}
                    Ok(cp) => f.add(format!(
                        "{name}: the mirrored checkpoint (size {}, root {}) is not the origin's \
                         (size {}, root {})",
                        cp.size,
                        hex::encode(cp.root),
                        own.size,
                        hex::encode(own.root)
                    )),
                    Err(e) => f.add(format!("{name}: the mirrored member does not verify: {e}")),
                },
                Err(e) => f.add(format!("{name}: {e}")),
            }
        }
        match c.evidence().await {
            Ok(ev) if ev.is_empty() => {}
            Ok(ev) => f.add(format!("{} holds evidence: {ev:?}", b.brand)),
            Err(e) => f.add(format!("{}'s evidence: {e}", b.brand)),
        }
    }
}

/// Finding 6: `loyalty verify` passes, accounts sum to zero, nothing negative or held, and the
/// clearing accounts hold what the committed redemptions less their refunds took.
async fn check_replay(
    run: &Run<'_>,
    logs: &[LogCopy],
    snap: &super::record::Inner,
    f: &mut Findings,
) {
    for (b, log) in run.brands.iter().zip(logs) {
        let c = b.client();
        let summary = match sdk::verify_log(&c, &b.verifier, sdk::VerifyOptions::default()).await {
            Ok(s) => s,
            Err(e) => {
                f.add(format!("{}'s log does not verify: {e:?}", b.brand));
                continue;
            }
        };
        if summary.entries < log.entries.len() as u64 {
            f.add(format!(
                "{} verified {} entries, but {} were read",
                b.brand,
                summary.entries,
                log.entries.len()
            ));
        }
        let mut member_ids = BTreeSet::new();
        for (_, v) in &log.entries {
            for m in [&v["body"]["member"], &v["body"]["quote"]["member"]] {
                if let Some(m) = m.as_str() {
                    member_ids.insert(m.to_owned());
                }
            }
        }
        // Obligations name the payer's member: only the payer's log holds that member's points.
        let mut total: i128 = 0;
        for m in &member_ids {
            let id: sdk::MemberId = m.parse().expect("a member id from the log");
            match c.member(&id).await {
                Ok(info) => {
                    total += i128::from(info.balance);
                    if info.pending != 0 {
                        f.add(format!(
                            "{} member {m}: {} points still pending",
                            b.brand, info.pending
                        ));
                    }
                }
                Err(sdk::Error::Api { status: 404, .. }) => {}
                Err(e) => f.add(format!("{} member {m}: {e}", b.brand)),
            }
        }
        let mut accounts = BTreeMap::new();
        for (account, balance) in &summary.system_balances {
            total += balance;
            accounts.insert(account.to_string(), *balance);
            let name = account.to_string();
            let negative_ok = name == "issued" || name == "adjustments";
            if *balance < 0 && !negative_ok {
                f.add(format!(
                    "{}: account {name} is negative: {balance}",
                    b.brand
                ));
            }
        }
        if total != 0 {
            f.add(format!(
                "{}: members and system accounts sum to {total}, not 0: {accounts:?}",
                b.brand
            ));
        }
        if accounts.get("held").copied().unwrap_or(0) != 0 {
            f.add(format!("{}: points still held: {accounts:?}", b.brand));
        }
        for (j, other) in run.brands.iter().enumerate() {
            if j == b.index {
                continue;
            }
            let expected: i128 = snap
                .redemptions
                .values()
                .filter(|r| r.payer == b.index && r.payee == j)
                .filter(|r| matches!(r.state, RedemptionState::Committed(_)))
                .map(|r| {
                    let refunded: u64 = r
                        .refunds
                        .iter()
                        .filter(|x| x.amount_minor.is_some())
                        .map(|x| x.points)
                        .sum();
                    i128::from(r.points) - i128::from(refunded)
                })
                .sum();
            let name = format!("clearing:{}", other.brand);
            let got = accounts.get(&name).copied().unwrap_or(0);
            if got != expected {
                f.add(format!(
                    "{}: {name} holds {got} points; the committed redemptions less refunds took \
                     {expected}",
                    b.brand
                ));
            }
        }
    }
}
