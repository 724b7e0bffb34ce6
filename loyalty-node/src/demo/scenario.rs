//! The demo's scripted day, step by step, through the SDK: partners, policies, agreements,
//! earning and tiers, a redemption of airline miles at the coffee chain, a refund, a crash of
//! the airline's node in the middle of a redemption, a status match by tier attestation, a
//! redemption of gym reps (USD) at the coffee chain (EUR), then the settlement and an audit
//! ([`super::settle`]).
//!
//! Invariant: each step prints what happens and where to look, and checks what it expects
//! against the nodes' APIs; the first difference stops the demo with the node's answer.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;

use sdk::federation::{AddPartnerRequest, RefundRequest};
use sdk::{
    HoldStatusKind, RetryPolicy, SetFxRateRequest, SetRateCardRequest, SetTiersRequest, Tier,
};

use super::report::{
    AgreementReport, AttestationReport, MemberReport, NodeReport, RedemptionReport, RefundReport,
    Report,
};
use super::settle::{audit, reconcile_all, settle, Line};
use super::steps::{
    authorise, check_member, earn, expect, id, log_time, member, num, parse, payable_time, points,
    wait_mirrored, wait_past, Narrator, Redemption,
};
use super::{now_ms, utc_date, utc_time, BrandSpec, Federation, AIRLINE, COFFEE, GYM};

/// Length of the demo agreements' settlement periods: short, so that the demo can co-sign a
/// statement of a period that really ended (a real agreement would say a day or a month).
pub const SETTLEMENT_PERIOD_MS: u64 = 30_000;
/// How long the crashing node has to abort at its fault point.
const CRASH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Rate cards and FX rates apply from this long after they are logged (they may not apply
/// before their entry's time).
const RATE_DELAY_MS: u64 = 500;
/// Qualifying window and grace period of every demo tier policy.
const TIER_WINDOW_MS: u64 = 365 * 86_400_000;
const TIER_GRACE_MS: u64 = 90 * 86_400_000;
/// The FX rate the gym logs: EUR per USD.
const USD_EUR: &str = "0.92";
/// The airline–coffee agreement's fee, in basis points.
const AIRLINE_FEE_BPS: u64 = 200;
/// Credit limit of both demo agreements: EUR 1,000.00.
const CREDIT_LIMIT_MINOR: u64 = 100_000;

/// Ada, a member of the airline and of the coffee chain.
pub const ADA: &str = "m-ada";
/// Ben, a member of the airline and of the gym.
pub const BEN: &str = "m-ben";
const AIRLINE_COFFEE: &str = "airline-coffee";
const GYM_COFFEE: &str = "gym-coffee";

/// The scenario's state as it goes: what it did, for the settlement and the report.
struct Day<'a> {
    fed: &'a mut Federation,
    say: Narrator,
    /// When the rate cards and the FX rate apply (ms since the Unix epoch).
    rates_from: u64,
    agreements: Vec<AgreementReport>,
    lines: Vec<Line>,
    redemptions: Vec<RedemptionReport>,
    refunds: Vec<RefundReport>,
    attestation: Option<AttestationReport>,
}

/// Runs the scenario on a federation whose nodes are not started yet, and reports what it did.
pub async fn run(fed: &mut Federation) -> Result<Report> {
    let mut day = Day {
        fed,
        say: Narrator::default(),
        rates_from: 0,
        agreements: Vec::new(),
        lines: Vec::new(),
        redemptions: Vec::new(),
        refunds: Vec::new(),
        attestation: None,
    };
    day.start_nodes().await?;
    day.pin_partners().await?;
    day.publish_policies().await?;
    day.sign_agreements().await?;
    day.earn_and_reach_tiers().await?;
    day.pay_with_miles().await?;
    day.refund_part().await?;
    day.crash_mid_redemption().await?;
    day.status_match().await?;
    day.pay_with_reps().await?;
    let statements = settle(&mut day.say, day.fed, &day.agreements, &day.lines).await?;
    let obligations = reconcile_all(day.fed, &day.agreements, &day.lines).await?;
    audit(&mut day.say, day.fed).await?;
    day.report(statements, obligations).await
}

impl Day<'_> {
    async fn start_nodes(&mut self) -> Result<()> {
        self.say
            .step("Start three brands, each its own node (`loyalty-node init`, then `run`)");
        self.fed.start().await?;
        for n in &self.fed.nodes {
            let s = n.spec;
            self.say.say(format!(
                "{:<8} {:<12} {:<13} {:<11} {}",
                s.brand,
                s.name,
                s.kind,
                format!("{}, {}", s.points, s.currency),
                n.url
            ));
        }
        self.say.say(
            "Each node signs its own append-only log (a Merkle tree with signed checkpoints).",
        );
        self.say
            .see(format!("{}/explorer", self.fed.node(&AIRLINE).url));
        Ok(())
    }

    async fn pin_partners(&mut self) -> Result<()> {
        self.say.step("Pin each other as partners");
        let nodes = &self.fed.nodes;
        for a in nodes {
            for b in nodes.iter().filter(|b| b.brand() != a.brand()) {
                a.client
                    .add_partner(&AddPartnerRequest {
                        brand: parse(b.brand())?,
                        url: b.url.clone(),
                        verifier_key: Some(b.verifier_key.clone()),
                    })
                    .await
                    .with_context(|| format!("{} pins {}", a.brand(), b.brand()))?;
            }
        }
        for a in nodes {
            for b in nodes.iter().filter(|b| b.brand() != a.brand()) {
                wait_mirrored(a, b).await?;
            }
        }
        self.say
            .say("Each node pins the other two by the verifier key `init` printed (6 pins),");
        self.say
            .say("then keeps a verified mirror of their logs: signatures, consistency, replay.");
        self.say
            .see(format!("{}/v1/partners", self.fed.node(&COFFEE).url));
        Ok(())
    }

    async fn publish_policies(&mut self) -> Result<()> {
        self.say.step("Publish each brand's policies");
        self.rates_from = now_ms() + RATE_DELAY_MS;
        for n in &self.fed.nodes {
            let s = n.spec;
            let tiers = s
                .tiers
                .iter()
                .map(|(name, threshold)| {
                    Ok(Tier {
                        name: parse(name)?,
                        threshold: *threshold,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            n.client
                .set_tiers(&SetTiersRequest {
                    id: id("tiers-1")?,
                    tiers,
                    window_ms: ledger::types::DurationMs::new(TIER_WINDOW_MS)?,
                    grace_ms: ledger::types::DurationMs::new(TIER_GRACE_MS)?,
                })
                .await
                .with_context(|| format!("tier policy of {}", s.brand))?;
            n.client
                .set_rate_card(&SetRateCardRequest {
                    id: id("rate-card-1")?,
                    currency: parse(s.currency)?,
                    point_value: parse(s.point_value)?,
                    valid_from: log_time(self.rates_from)?,
                })
                .await
                .with_context(|| format!("rate card of {}", s.brand))?;
            let tiers: Vec<String> = s
                .tiers
                .iter()
                .map(|(name, t)| format!("{name} {}", num(*t)))
                .collect();
            self.say.say(format!(
                "{:<8} 1 {} = {} {}; tiers: {} {} a year",
                s.brand,
                s.points.trim_end_matches('s'),
                s.currency,
                s.point_value,
                tiers.join(", "),
                s.points
            ));
        }
        let gym = self.fed.node(&GYM);
        gym.client
            .set_fx_rate(&SetFxRateRequest {
                id: id("fx-usd-eur-1")?,
                from: parse("USD")?,
                to: parse("EUR")?,
                rate: parse(USD_EUR)?,
                valid_from: log_time(self.rates_from)?,
            })
            .await
            .context("the gym's FX rate")?;
        self.say.say(format!(
            "gym      FX rate USD 1 = EUR {USD_EUR} (its agreement with coffee names it FX source)"
        ));
        self.say.see(format!("{}/v1/policy", gym.url));
        Ok(())
    }

    async fn sign_agreements(&mut self) -> Result<()> {
        self.say
            .step("Sign agreements: airline miles and gym reps pay at the coffee chain");
        let origin = now_ms();
        let terms = |agreement: &str, payer: &BrandSpec, fee_bps| AgreementReport {
            agreement: agreement.into(),
            payer: payer.brand.into(),
            payee: COFFEE.brand.into(),
            settlement_currency: "EUR".into(),
            fx_source: payer.brand.into(),
            fee_bps,
            period_origin: origin,
            period_ms: SETTLEMENT_PERIOD_MS,
        };
        self.agreements = vec![
            terms(AIRLINE_COFFEE, &AIRLINE, AIRLINE_FEE_BPS),
            terms(GYM_COFFEE, &GYM, 0),
        ];
        for a in &self.agreements {
            let terms = agreement_terms(a)?;
            let payer = self.fed.node_of(&a.payer)?;
            let coffee = self.fed.node(&COFFEE);
            let steps = [
                (payer, "pending"),
                (coffee, "logged"),
                // Asked again, the first side answers with the logged agreement.
                (payer, "logged"),
            ];
            for (node, want) in steps {
                let outcome = node
                    .client
                    .approve_agreement(&terms)
                    .await
                    .with_context(|| format!("{} approves {}", node.brand(), a.agreement))?;
                expect(
                    &format!("{} after {}'s approval", a.agreement, node.brand()),
                    outcome.status.as_str(),
                    want,
                )?;
            }
        }
        self.say.say(format!(
            "{AIRLINE_COFFEE}: the airline owes coffee the miles' value in EUR, less a {}% fee.",
            AIRLINE_FEE_BPS / 100
        ));
        self.say.say(format!(
            "{GYM_COFFEE}: reps are valued in USD and settled in EUR at the gym's FX rate."
        ));
        self.say
            .say("Both operators approve the same terms; both nodes sign and log them.");
        self.say.say(format!(
            "Settlement periods: {} s from now ({} UTC); a real agreement would say a day.",
            SETTLEMENT_PERIOD_MS / 1000,
            utc_time(origin)
        ));
        self.say.see(format!(
            "{}/v1/log/entries?start=0&end=20",
            self.fed.node(&COFFEE).url
        ));
        Ok(())
    }

    async fn earn_and_reach_tiers(&mut self) -> Result<()> {
        self.say.step("Members earn and reach tiers");
        let (airline, coffee, gym) = (
            self.fed.node(&AIRLINE),
            self.fed.node(&COFFEE),
            self.fed.node(&GYM),
        );
        earn(airline, ADA, "flight-ada-1", 2500).await?;
        check_member(airline, ADA, 2500, 0, "silver").await?;
        self.say
            .say("Ada flies Paris-Lisbon: +2,500 miles, silver at once.");
        earn(airline, ADA, "flight-ada-2", 3000).await?;
        check_member(airline, ADA, 5500, 0, "gold").await?;
        self.say
            .say("Ada flies Lisbon-New York: +3,000 miles (5,500), gold.");
        earn(airline, BEN, "flight-ben-1", 1200).await?;
        check_member(airline, BEN, 1200, 0, "blue").await?;
        self.say.say("Ben flies Berlin-Rome: +1,200 miles, blue.");
        earn(gym, BEN, "classes-ben-1", 600).await?;
        check_member(gym, BEN, 600, 0, "plus").await?;
        earn(gym, BEN, "classes-ben-2", 600).await?;
        check_member(gym, BEN, 1200, 0, "elite").await?;
        self.say
            .say("Ben trains at the gym: +600 reps (plus), +600 reps (1,200), elite.");
        earn(coffee, ADA, "latte-ada-1", 60).await?;
        check_member(coffee, ADA, 60, 0, "green").await?;
        self.say.say("Ada buys coffee: +60 beans, green.");
        self.say
            .say("Member ids are pseudonymous strings each brand picks; no names enter a log.");
        self.say.see(format!("{}/v1/members/{ADA}", airline.url));
        self.say
            .see(format!("{}/explorer/members/{ADA}", airline.url));
        Ok(())
    }

    /// Runs `r` at coffee through the SDK's `redeem_at_partner` (with `client`, or coffee's
    /// default one), checks the amount, and records the redemption and its obligation line.
    async fn redeem(
        &mut self,
        r: &Redemption<'_>,
        agreement: &'static str,
        points: u64,
        amount_minor: u64,
        resumed_after_crash: bool,
    ) -> Result<sdk::federation::Committed> {
        let coffee = self.fed.node(&COFFEE);
        let done = coffee
            .client
            .redeem_at_partner(&r.request()?)
            .await
            .with_context(|| format!("redeem {} at coffee", r.redemption))?;
        expect(
            &format!("{}: amount", r.redemption),
            done.amount_minor,
            amount_minor,
        )?;
        expect(
            &format!("{}: currency", r.redemption),
            done.currency.as_str(),
            "EUR",
        )?;
        let time = payable_time(&done, self.fed.node_of(r.payer)?)?;
        self.lines.push(Line {
            agreement,
            time,
            amount_minor: amount_minor as i64,
        });
        self.redemptions.push(RedemptionReport {
            redemption: r.redemption.into(),
            agreement: agreement.into(),
            payer: r.payer.into(),
            payee: COFFEE.brand.into(),
            member: r.member.into(),
            points,
            amount_minor,
            currency: done.currency.clone(),
            time,
            resumed_after_crash,
        });
        Ok(done)
    }

    async fn pay_with_miles(&mut self) -> Result<()> {
        self.say
            .step("Ada pays at the coffee chain with airline miles");
        let (airline, coffee) = (self.fed.node(&AIRLINE), self.fed.node(&COFFEE));
        authorise(airline, ADA, "auth-ada-coffee-1", COFFEE.brand, 1500).await?;
        wait_past(self.rates_from).await;
        wait_mirrored(coffee, airline).await?;
        let r = Redemption {
            redemption: "ada-coffee-1",
            agreement: AIRLINE_COFFEE,
            payer: AIRLINE.brand,
            member: ADA,
            points: Some(1500),
            price_minor: None,
            authorisation: "auth-ada-coffee-1",
        };
        // 1,500 × EUR 0.01 = EUR 15.00, less 2 %.
        self.redeem(&r, AIRLINE_COFFEE, 1500, 1470, false).await?;
        let (airline, coffee) = (self.fed.node(&AIRLINE), self.fed.node(&COFFEE));
        check_member(airline, ADA, 4000, 0, "gold").await?;
        let say = &self.say;
        say.say("Authorise: the airline app lets coffee hold up to 1,500 of Ada's miles, once.");
        say.say("Quote:     coffee prices them from its verified mirror of the airline's log:");
        say.say("           1,500 miles x EUR 0.01 = EUR 15.00, less 2% = EUR 14.70, locked.");
        say.say("Prepare:   the airline holds the miles under a hash lock.");
        say.say("Commit:    coffee reveals the secret; the airline posts the miles and logs that");
        say.say("           it owes coffee EUR 14.70; coffee logs its side. Ada has 4,000 left.");
        say.say("(The SDK's redeem_at_partner runs quote, prepare and commit at coffee.)");
        say.see(format!("{}/v1/redemptions/ada-coffee-1/status", coffee.url));
        say.see(format!("{}/v1/holds/ada-coffee-1", airline.url));
        Ok(())
    }

    async fn refund_part(&mut self) -> Result<()> {
        self.say
            .step("A refund: coffee cancels part of Ada's order");
        let (airline, coffee) = (self.fed.node(&AIRLINE), self.fed.node(&COFFEE));
        let r = coffee
            .client
            .refund_at_partner(
                &id("ada-coffee-1")?,
                &RefundRequest {
                    refund: id("ada-coffee-1-refund-1")?,
                    points: points(500)?,
                },
            )
            .await
            .context("refund 500 miles of ada-coffee-1 at coffee")?;
        // The cumulative rule: EUR 14.70 × 500 / 1,500.
        expect("the refund's amount", r.amount_minor, 490)?;
        expect("points refunded so far", r.refunded_points, 500)?;
        check_member(airline, ADA, 4500, 0, "gold").await?;
        let time = r
            .payer
            .verify(&airline.verifier())
            .map_err(|e| anyhow!("the airline's refund receipt: {e}"))?
            .entry
            .time
            .get();
        self.lines.push(Line {
            agreement: AIRLINE_COFFEE,
            time,
            amount_minor: -490,
        });
        self.refunds.push(RefundReport {
            redemption: "ada-coffee-1".into(),
            refund: "ada-coffee-1-refund-1".into(),
            payer: AIRLINE.brand.into(),
            payee: COFFEE.brand.into(),
            points: 500,
            amount_minor: r.amount_minor,
            currency: r.currency.clone(),
            time,
        });
        self.say
            .say("Coffee refunds 500 of the 1,500 miles (POST /v1/redemptions/{id}/refunds):");
        self.say
            .say("the airline returns them to Ada (4,500) and owes EUR 4.90 less; both log it.");
        self.say.see(format!(
            "{}/v1/reconciliation/airline?from=0&to={}",
            coffee.url,
            now_ms() + 86_400_000
        ));
        Ok(())
    }

    async fn crash_mid_redemption(&mut self) -> Result<()> {
        self.say.step("A crash in the middle of a redemption");
        self.say
            .say("The airline node restarts with LOYALTY_FAULT=payer_commit_logged: at the next");
        self.say.say(
            "commit it aborts right after logging it, before it answers (as if the power failed).",
        );
        let airline = self.fed.node_mut(&AIRLINE);
        airline.stop().await?;
        airline.start(Some("payer_commit_logged")).await?;
        let (airline, coffee) = (self.fed.node(&AIRLINE), self.fed.node(&COFFEE));
        authorise(airline, ADA, "auth-ada-coffee-2", COFFEE.brand, 1000).await?;
        let r = Redemption {
            redemption: "ada-coffee-2",
            agreement: AIRLINE_COFFEE,
            payer: AIRLINE.brand,
            member: ADA,
            points: Some(1000),
            price_minor: None,
            authorisation: "auth-ada-coffee-2",
        };
        // One attempt, no retries: the app sees the failure.
        let once = sdk::Client::builder(&coffee.url)
            .api_key(coffee.admin_key.clone())
            .verifier(coffee.verifier())
            .retry(RetryPolicy::none())
            .timeout(super::REQUEST_TIMEOUT)
            .build()?;
        let e = match once.redeem_at_partner(&r.request()?).await {
            Ok(_) => {
                bail!("ada-coffee-2 committed although the airline was to crash at its commit")
            }
            Err(e) => e,
        };
        self.say
            .say("Ada redeems 1,000 more miles (ada-coffee-2). Coffee's app gets an error:");
        match &e {
            sdk::Error::Api {
                status,
                code,
                detail,
                ..
            } => self.say.say(format!("  {status} {code}: {detail}")),
            other => self.say.say(format!("  {other}")),
        }
        let airline = self.fed.node_mut(&AIRLINE);
        let status = airline.wait_exit(CRASH_TIMEOUT).await?;
        self.say
            .say(format!("The airline's process ended: {status}."));
        airline.start(None).await?;
        let hold = self
            .fed
            .node(&AIRLINE)
            .client
            .hold_status(&id("ada-coffee-2")?)
            .await
            .context("the hold of ada-coffee-2 at the airline")?;
        expect(
            "ada-coffee-2: the hold after the crash",
            hold.status,
            HoldStatusKind::Posted,
        )?;
        check_member(self.fed.node(&AIRLINE), ADA, 3500, 0, "gold").await?;
        self.say
            .say("Restarted normally, its log already holds the commit: Ada has 3,500 miles.");
        // 1,000 × EUR 0.01 = EUR 10.00, less 2 %.
        let done = self.redeem(&r, AIRLINE_COFFEE, 1000, 980, true).await?;
        let coffee = self.fed.node(&COFFEE);
        let again = coffee.client.redeem_at_partner(&r.request()?).await?;
        expect("ada-coffee-2 asked again", &again, &done)?;
        check_member(self.fed.node(&AIRLINE), ADA, 3500, 0, "gold").await?;
        self.say
            .say("Coffee resumes the same redemption id: it completes once (EUR 9.80 owed);");
        self.say
            .say("asking again changes nothing, and Ada still has 3,500 miles.");
        self.say
            .see(format!("{}/v1/redemptions/ada-coffee-2/status", coffee.url));
        Ok(())
    }

    async fn status_match(&mut self) -> Result<()> {
        self.say
            .step("Status match: Ben's gym tier counts at the airline");
        let (airline, gym) = (self.fed.node(&AIRLINE), self.fed.node(&GYM));
        let att = gym
            .client
            .attestation(&member(BEN)?)
            .await
            .context("Ben's tier attestation at the gym")?;
        expect("Ben's attested tier", att.statement.tier.as_str(), "elite")?;
        let verdict = airline
            .client
            .verify_attestation(&att)
            .await
            .context("the airline verifies Ben's gym attestation")?;
        expect(
            "the airline's verdict (valid, brand, tier)",
            (verdict.valid, verdict.brand.as_str(), verdict.tier.as_str()),
            (true, GYM.brand, "elite"),
        )?;
        let valid_until = att.statement.valid_until.map(|u| u.get());
        earn(airline, BEN, "status-match-ben", 1000).await?;
        check_member(airline, BEN, 2200, 0, "silver").await?;
        self.attestation = Some(AttestationReport {
            brand: GYM.brand.into(),
            member: BEN.into(),
            tier: "elite".into(),
            valid_until,
            verified_by: AIRLINE.brand.into(),
            bonus_member: BEN.into(),
            bonus_points: 1000,
            bonus_entry: "status-match-ben".into(),
        });
        self.say.say(format!(
            "The gym signs \"{BEN} is elite until {}\" with an inclusion proof (logged);",
            valid_until.map_or("forever".into(), utc_date)
        ));
        self.say
            .say("the airline checks it against the gym's pinned key: valid.");
        self.say
            .say("Airline offer: gym elites get 1,000 bonus miles, which lift Ben to silver.");
        self.say.see(format!("{}/explorer/log", gym.url));
        self.say.see(format!("{}/v1/members/{BEN}", airline.url));
        Ok(())
    }

    async fn pay_with_reps(&mut self) -> Result<()> {
        self.say
            .step("Ben pays at the coffee chain with gym reps (USD into EUR)");
        let (coffee, gym) = (self.fed.node(&COFFEE), self.fed.node(&GYM));
        authorise(gym, BEN, "auth-ben-coffee-1", COFFEE.brand, 300).await?;
        wait_mirrored(coffee, gym).await?;
        let r = Redemption {
            redemption: "ben-coffee-1",
            agreement: GYM_COFFEE,
            payer: GYM.brand,
            member: BEN,
            points: None,
            price_minor: Some(460),
            authorisation: "auth-ben-coffee-1",
        };
        // EUR 4.60 at USD 0.02 × 0.92 = EUR 0.0184 a rep: 250 reps, worth exactly EUR 4.60.
        self.redeem(&r, GYM_COFFEE, 250, 460, false).await?;
        let (coffee, gym) = (self.fed.node(&COFFEE), self.fed.node(&GYM));
        let quote = coffee.client.get_quote(&id("ben-coffee-1")?).await?;
        expect(
            "ben-coffee-1: reps for EUR 4.60",
            quote.quote.points.get(),
            250,
        )?;
        check_member(gym, BEN, 950, 0, "elite").await?;
        self.say
            .say("A EUR 4.60 smoothie: 1 rep = USD 0.02 = EUR 0.0184 (gym's FX entry): 250 reps.");
        self.say
            .say("The gym owes coffee EUR 4.60. Ben stays elite: spending never lowers a tier.");
        self.say
            .see(format!("{}/v1/redemptions/ben-coffee-1/quote", coffee.url));
        Ok(())
    }

    /// Checks every member once more and puts the report together.
    async fn report(
        self,
        statements: Vec<super::report::StatementReport>,
        obligations: Vec<super::report::ObligationReport>,
    ) -> Result<Report> {
        let expected = [
            (&AIRLINE, ADA, 3500, "gold"),
            (&AIRLINE, BEN, 2200, "silver"),
            (&COFFEE, ADA, 60, "green"),
            (&GYM, BEN, 950, "elite"),
        ];
        let mut members = Vec::new();
        for (spec, who, balance, tier) in expected {
            let m = check_member(self.fed.node(spec), who, balance, 0, tier).await?;
            members.push(MemberReport {
                brand: spec.brand.into(),
                member: who.into(),
                balance: m.balance,
                available: m.available,
                pending: m.pending,
                tier: tier.into(),
            });
        }
        Ok(Report {
            dir: self.fed.dir.display().to_string(),
            nodes: self
                .fed
                .nodes
                .iter()
                .map(|n| NodeReport {
                    spec: n.spec,
                    url: n.url.clone(),
                    data: n.data.display().to_string(),
                    log: n.log_path().display().to_string(),
                    admin_key: n.admin_key.clone(),
                    verifier_key: n.verifier_key.clone(),
                })
                .collect(),
            members,
            agreements: self.agreements,
            redemptions: self.redemptions,
            refunds: self.refunds,
            attestation: self
                .attestation
                .ok_or_else(|| anyhow!("the status match did not run"))?,
            obligations,
            statements,
        })
    }
}

/// The agreement terms both brands approve: one direction (the payer's points pay at coffee),
/// rounded half-even, within [`CREDIT_LIMIT_MINOR`].
fn agreement_terms(a: &AgreementReport) -> Result<ledger::agreement::AgreementTerms> {
    serde_json::from_value(json!({
        "agreement": a.agreement,
        "brands": [a.payer, a.payee],
        "directions": [{"payer": a.payer, "payee": a.payee}],
        "settlement_currency": a.settlement_currency,
        "fx_source": a.fx_source,
        "fee_bps": a.fee_bps,
        "credit_limit_minor": CREDIT_LIMIT_MINOR,
        "period_ms": a.period_ms,
        "period_origin": a.period_origin,
        "rounding": "half_even",
        "valid_from": a.period_origin,
    }))
    .with_context(|| format!("terms of {}", a.agreement))
}
