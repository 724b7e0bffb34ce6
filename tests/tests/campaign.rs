//! The fault campaign (README, "Fault campaign"; `federation_tests::campaign`): three real
//! nodes behind fault-injecting proxies, a seeded workload of earns, redeems, holds and
//! cross-brand redemptions, a seeded nemesis (kill -9 and restart, clock skew, partitions one
//! way and both, lost answers, delays), then a bank-style check of every invariant.
//!
//! CI runs a short campaign with a fresh random seed each time; `LOYALTY_CAMPAIGN_SEED`
//! replays one (it is printed first, and in every failure) and `LOYALTY_CAMPAIGN_SECONDS`
//! sets the workload's length, e.g. for a long run:
//!
//! ```sh
//! LOYALTY_CAMPAIGN_SECONDS=1800 cargo test --release --workspace --test campaign -- --nocapture
//! ```

use std::time::Duration;

use federation_tests::campaign::{run, Settings, PHASE_LIMIT};
use federation_tests::harness::bounded;

/// Every acknowledged write is kept, balances never go negative and sum to zero per brand,
/// holds resolve exactly once, both sides of every pair agree on what they owe each other and
/// co-sign each period's statement, mirrors equal their origins and every log verifies, after
/// a seeded storm of crashes, clock skews, partitions and delays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_campaign_keeps_every_invariant() {
    let settings = Settings::from_env();
    // Set-up, workload, resume and checks: each phase is bounded on its own; this bounds all.
    let limit = settings.workload + 4 * PHASE_LIMIT + Duration::from_secs(60);
    let outcome = bounded(limit, "the fault campaign", run(settings)).await;
    assert!(
        outcome.acked_writes > 0 && outcome.redemptions > 0,
        "campaign seed: {}: the workload did nothing: {outcome:?}",
        settings.seed
    );
}
