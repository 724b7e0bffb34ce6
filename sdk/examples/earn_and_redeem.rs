//! Earns points for a member, redeems some of them through a hold that is then posted, and
//! shows the verified receipts and the member's final balance.
//!
//! ```text
//! cargo run -p sdk --example earn_and_redeem -- http://127.0.0.1:7700 <api-key> <verifier-key>
//! ```
//!
//! The API key needs the `earn`, `redeem` and `read` scopes (or `admin`); the verifier key is
//! the log's C2SP key string (`loyalty-node` prints it, and `GET /v1/log/key` serves it, but
//! an app should pin the one it got from the brand).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sdk::{
    Client, EarnRequest, HoldRequest, LogTime, MemberId, NoteVerifier, Points, PostRequest,
    WriteResult,
};

fn show(step: &str, w: &WriteResult) {
    let cp = w
        .checkpoint
        .as_ref()
        .expect("the client pins a verifier key, so every receipt is verified");
    println!(
        "{step}: {} {} logged at index {} ({:?}); receipt verified against checkpoint of size {}",
        w.entry.kind.type_name(),
        w.entry.id,
        w.index,
        w.status,
        cp.size,
    );
    println!("  entry: {}", w.receipt.entry);
    println!(
        "  inclusion proof: {} hashes",
        w.receipt.inclusion_proof.len()
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [node, api_key, verifier_key] = args.as_slice() else {
        eprintln!("usage: earn_and_redeem NODE_URL API_KEY VERIFIER_KEY");
        std::process::exit(2);
    };
    let client = Client::builder(node)
        .api_key(api_key.clone())
        .verifier(NoteVerifier::parse(verifier_key)?)
        .build()?;

    // A pseudonymous member id; never a name, e-mail or phone number.
    let member: MemberId = sdk::new_entry_id_with_prefix("demo-member")?
        .as_str()
        .parse()?;

    let earned = client
        .earn(
            &member,
            &EarnRequest::new(sdk::new_entry_id(), Points::new(500)?),
        )
        .await?;
    show("earn", &earned);

    // Reserve 200 points for ten minutes, then post the hold (the reward was delivered).
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let expires_at = LogTime::new(now_ms + Duration::from_secs(600).as_millis() as u64)?;
    let hold_id = sdk::new_entry_id_with_prefix("hold")?;
    let held = client
        .hold(
            &member,
            &HoldRequest::new(hold_id.clone(), Points::new(200)?, expires_at),
        )
        .await?;
    show("hold", &held);
    let posted = client
        .post_hold(&hold_id, &PostRequest::new(sdk::new_entry_id()))
        .await?;
    show("post", &posted);

    // Retrying a write with the same id is safe: the node answers with the original receipt.
    let again = client
        .post_hold(&hold_id, &PostRequest::new(posted.entry.id.clone()))
        .await?;
    println!("retried post: {:?} at index {}", again.status, again.index);

    let m = client.member(&member).await?;
    println!(
        "member {}: balance {}, available {}, pending {}",
        m.member, m.balance, m.available, m.pending
    );
    let hold = client.hold_status(&hold_id).await?;
    println!("hold {}: {:?}", hold.id, hold.status);
    Ok(())
}
