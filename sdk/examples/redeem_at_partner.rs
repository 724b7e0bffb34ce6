//! A member of brand A (the payer) redeems A-points at brand B (where this app runs), end to
//! end: the member's brand issues a spend authorisation for B, B quotes the points from its
//! verified mirror of A's log, A holds them, B commits, and both brands log what A owes B.
//!
//! ```text
//! cargo run -p sdk --example redeem_at_partner -- \
//!     <A brand> <A url> <A api key> <B brand> <B url> <B api key> <B verifier key> \
//!     <agreement> <member> <points>
//! ```
//!
//! A and B must be partners (pinned) with a logged agreement under which A's points are redeemed
//! at B, and A must have a rate card in force (spec/redemption.md). The A key needs `redeem`
//! (the authorisation is the member's consent, given through A's app); the B key `redeem` and
//! `read`. Run it twice with the same redemption id and it resumes instead of redeeming twice.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sdk::federation::RedeemAtPartner;
use sdk::{AuthoriseRequest, BrandId, Client, EntryId, LogTime, MemberId, NoteVerifier, Points};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [payer, a_url, a_key, payee, b_url, b_key, b_verifier, agreement, member, points] =
        args.as_slice()
    else {
        eprintln!(
            "usage: redeem_at_partner <A brand> <A url> <A api key> <B brand> <B url> <B api key> <B verifier key> <agreement> <member> <points>"
        );
        std::process::exit(2);
    };
    let member: MemberId = member.parse()?;
    let points = Points::new(points.parse()?)?;
    let a = Client::builder(a_url).api_key(a_key.clone()).build()?;
    let b = Client::builder(b_url)
        .api_key(b_key.clone())
        .verifier(NoteVerifier::parse(b_verifier)?)
        .timeout(Duration::from_secs(10))
        .build()?;
    let payer: BrandId = payer.parse()?;
    let payee: BrandId = payee.parse()?;

    // 1. At the member's brand: the member lets B hold up to `points`, once, for 10 minutes.
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let suffix = now.to_string();
    let authorisation: EntryId = format!("auth-{suffix}").parse()?;
    a.authorise(
        &member,
        &AuthoriseRequest {
            id: authorisation.clone(),
            payee: payee.clone(),
            max_points: points,
            expires_at: LogTime::new(now + 600_000)?,
        },
    )
    .await?;
    println!(
        "{payer} authorised {payee} to hold up to {} points of {member}",
        points.get()
    );

    // 2–4. At B: quote, prepare (A holds), commit (A posts and owes; B logs its side).
    let done = b
        .redeem_at_partner(&RedeemAtPartner {
            redemption: format!("red-{suffix}").parse()?,
            agreement: agreement.parse()?,
            payer: payer.clone(),
            member: member.clone(),
            points: Some(points),
            price_minor: None,
            authorisation,
        })
        .await?;
    println!(
        "redeemed {} {payer} points of {member} at {payee}: {payer} owes {payee} {} minor units of {}",
        points.get(),
        done.amount_minor,
        done.currency
    );
    println!(
        "  {payer}'s payable at index {}, {payee}'s receivable at index {}",
        done.payer.payable.index, done.receivable.index
    );
    println!("deliver the reward now: the redemption is committed on both sides");
    Ok(())
}
