//! The JSON report of `loyalty-node demo --report FILE` (what the scenario did, for a test to
//! check against the nodes' APIs) and the closing "Explore" section of the narration.
//!
//! Invariant: every number in the report is one the scenario checked against a node's API
//! before writing it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::scenario::ADA;
use super::{BrandSpec, Federation, AIRLINE, COFFEE};

/// What the scenario did, for a test to check against the nodes' APIs (`--report`).
#[derive(Debug, Serialize)]
pub struct Report {
    /// The demo's directory; each node's data is `<dir>/<brand>`.
    pub dir: String,
    pub nodes: Vec<NodeReport>,
    /// Every member at the end, as the member's brand should show it.
    pub members: Vec<MemberReport>,
    pub agreements: Vec<AgreementReport>,
    pub redemptions: Vec<RedemptionReport>,
    pub refunds: Vec<RefundReport>,
    pub attestation: AttestationReport,
    /// Per agreement, every obligation line so far, netted (all periods).
    pub obligations: Vec<ObligationReport>,
    /// The co-signed settlement statements.
    pub statements: Vec<StatementReport>,
}

#[derive(Debug, Serialize)]
pub struct NodeReport {
    #[serde(flatten)]
    pub spec: &'static BrandSpec,
    pub url: String,
    pub data: String,
    pub log: String,
    pub admin_key: String,
    pub verifier_key: String,
}

#[derive(Debug, Serialize)]
pub struct MemberReport {
    pub brand: String,
    pub member: String,
    pub balance: u64,
    pub available: u64,
    pub pending: u64,
    pub tier: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgreementReport {
    pub agreement: String,
    pub payer: String,
    pub payee: String,
    pub settlement_currency: String,
    pub fx_source: String,
    pub fee_bps: u64,
    pub period_origin: u64,
    pub period_ms: u64,
}

#[derive(Debug, Serialize)]
pub struct RedemptionReport {
    pub redemption: String,
    pub agreement: String,
    pub payer: String,
    pub payee: String,
    pub member: String,
    pub points: u64,
    pub amount_minor: u64,
    pub currency: String,
    /// The log time of the payer's obligation (the line's time).
    pub time: u64,
    /// Whether the payer's node crashed during the commit and the redemption was resumed.
    pub resumed_after_crash: bool,
}

#[derive(Debug, Serialize)]
pub struct RefundReport {
    pub redemption: String,
    pub refund: String,
    pub payer: String,
    pub payee: String,
    pub points: u64,
    pub amount_minor: u64,
    pub currency: String,
    pub time: u64,
}

#[derive(Debug, Serialize)]
pub struct AttestationReport {
    pub brand: String,
    pub member: String,
    pub tier: String,
    pub valid_until: Option<u64>,
    pub verified_by: String,
    /// The bonus the verifying brand granted: (member there, points, entry id).
    pub bonus_member: String,
    pub bonus_points: u64,
    pub bonus_entry: String,
}

#[derive(Debug, Serialize)]
pub struct ObligationReport {
    pub agreement: String,
    pub payer: String,
    pub payee: String,
    pub currency: String,
    pub lines: u64,
    /// What the payer owes the payee over every line so far, in minor units.
    pub net_minor: i64,
}

#[derive(Debug, Serialize)]
pub struct StatementReport {
    pub agreement: String,
    pub period: u64,
    pub from: u64,
    pub to: u64,
    pub currency: String,
    pub lines: u64,
    pub net: serde_json::Value,
    /// The `statement` entry's index in each brand's log.
    pub index: BTreeMap<String, u64>,
}

/// Prints where to look and what to use, once the scenario is done.
pub fn explore(fed: &Federation, report: &Report) {
    println!("\nExplore");
    for n in &fed.nodes {
        let members: Vec<&str> = report
            .members
            .iter()
            .filter(|m| m.brand == n.brand())
            .map(|m| m.member.as_str())
            .collect();
        println!(
            "  {}: {} ({}) at {}",
            n.brand(),
            n.spec.name,
            n.spec.kind,
            n.url
        );
        println!("    explorer      {}/explorer", n.url);
        for m in members {
            println!("    member        {}/explorer/members/{m}", n.url);
        }
        println!("    settlement    {}/explorer/settlement", n.url);
        println!("    admin key     {}", n.admin_key);
        println!("    verifier key  {}", n.verifier_key);
        println!("    data          {}", n.data.display());
        println!("    node log      {}", n.log_path().display());
    }
    let coffee = fed.node(&COFFEE);
    let airline = fed.node(&AIRLINE);
    println!("  API (the admin key as a bearer token; spec/api.md lists every route):");
    println!(
        "    curl -H 'Authorization: Bearer {}' {}/v1/members/{ADA}",
        airline.admin_key, airline.url
    );
    println!(
        "    curl -H 'Authorization: Bearer {}' {}/v1/statements/airline",
        coffee.admin_key, coffee.url
    );
    println!("  CLI:");
    println!(
        "    loyalty --node {} --key {} history {ADA}",
        airline.url, airline.admin_key
    );
    println!(
        "    loyalty verify --node {} --log-key {}",
        airline.url, airline.verifier_key
    );
}
