//! The end of the run, before the checks: every unfinished piece of work is taken up again
//! with the same request (each step is idempotent), straight to the nodes (every fault is
//! healed by then), with the SDK's default retries:
//!
//! - a local hold whose post or void was not acknowledged: the same post or void again (a
//!   hold that expired meanwhile is released by its node instead);
//! - a redemption meant to commit: `redeem_at_partner` again;
//! - a redemption meant to be voided: prepare again (so that no hold can appear after the
//!   void), then void;
//! - whatever that does not settle is decided by the payer's log: an open hold is voided, a
//!   posted one is committed again (which completes the payee's side), none means no hold;
//! - refunds of committed redemptions that were not acknowledged: the same refund again, in
//!   order.
//!
//! Invariant: after [`resume_all`], every redemption is `Committed`, `Voided`, `NoHold`, or
//! `Stuck` with the reason (which the checker reports).

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::record::{describe, error_code, HoldEnd, Intent, Record, Redemption, RedemptionState};
use super::BrandInfo;

/// Redemptions resumed at once.
const CONCURRENCY_MAX: usize = 8;

fn id(s: &str) -> sdk::EntryId {
    s.parse().expect("a valid entry id")
}

/// Resumes every unfinished hold, redemption and refund; see the module documentation.
pub async fn resume_all(brands: &Arc<Vec<BrandInfo>>, record: &Arc<Record>) {
    let snap = record.snapshot();
    for (hold, h) in &snap.holds {
        if !h.acked || h.ended || h.intent == HoldEnd::Abandon {
            continue;
        }
        let c = brands[h.brand].client();
        let r = match h.intent {
            HoldEnd::Post => {
                c.post_hold(&id(hold), &sdk::PostRequest::new(id(&h.end_id)))
                    .await
            }
            _ => {
                c.void_hold(&id(hold), &sdk::VoidRequest { id: id(&h.end_id) })
                    .await
            }
        };
        let what = if h.intent == HoldEnd::Post {
            "post"
        } else {
            "void"
        };
        let (ended, error) = match r {
            Ok(w) => {
                record.acked(h.brand, what, &w.receipt);
                (true, None)
            }
            Err(e) => (false, Some(describe(&e))),
        };
        record.with(|i| {
            if let Some(x) = i.holds.get_mut(hold) {
                x.ended = ended;
                x.last_error = error;
            }
        });
    }

    let permits = Arc::new(Semaphore::new(CONCURRENCY_MAX));
    let mut tasks = JoinSet::new();
    for r in snap.redemptions.into_values() {
        let unfinished = matches!(r.state, RedemptionState::Unfinished(_));
        let refunds_left = r.refunds.iter().any(|f| f.amount_minor.is_none());
        if !unfinished && !refunds_left {
            continue;
        }
        let (brands, record, permits) = (brands.clone(), record.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .expect("the semaphore is open");
            let c = brands[r.payee].client();
            let state = if unfinished {
                resume_one(&brands, &record, &c, &r).await
            } else {
                r.state.clone()
            };
            record.with(|i| {
                if let Some(x) = i.redemptions.get_mut(&r.id) {
                    x.state = state.clone();
                }
            });
            if matches!(state, RedemptionState::Committed(_)) {
                resume_refunds(&record, &c, &r).await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    }
}

fn request(r: &Redemption, brands: &[BrandInfo]) -> sdk::federation::RedeemAtPartner {
    sdk::federation::RedeemAtPartner {
        redemption: id(&r.id),
        agreement: id(&r.agreement),
        payer: brands[r.payer].id(),
        member: r.member.parse().expect("a member id"),
        points: Some(sdk::Points::new(r.points).expect("points")),
        price_minor: None,
        authorisation: id(&r.authorisation),
    }
}

fn ack_commit(record: &Record, r: &Redemption, done: &sdk::federation::Committed) {
    record.acked(r.payer, "post", &done.payer.post);
    record.acked(r.payer, "payable", &done.payer.payable);
    record.acked(r.payee, "receivable", &done.receivable);
}

async fn resume_one(
    brands: &[BrandInfo],
    record: &Record,
    c: &sdk::Client,
    r: &Redemption,
) -> RedemptionState {
    let req = request(r, brands);
    let red = id(&r.id);
    let first = match r.intent {
        Intent::Commit => match c.redeem_at_partner(&req).await {
            Ok(done) => {
                ack_commit(record, r, &done);
                return RedemptionState::Committed(done.amount_minor);
            }
            Err(e) => format!(
                "{}; the quote: {:?}",
                describe(&e),
                c.get_quote(&red).await.map(|q| q.receipt.index)
            ),
        },
        Intent::Void => {
            // A prepare first: a hold that a late prepare could still create exists now, and
            // the void then releases it.
            let _ = c.prepare(&red, &req.authorisation).await;
            match c.void_redemption(&red).await {
                Ok(s) if s.status == "voided" => {
                    if let Some(x) = &s.resolution {
                        record.acked(r.payer, "void", x);
                    }
                    return RedemptionState::Voided;
                }
                Ok(s) => format!("void answered {}", s.status),
                // The payer holds nothing, or this node never quoted it (so nothing can
                // have been prepared).
                Err(e)
                    if matches!(
                        error_code(&e).as_str(),
                        "unknown_redemption" | "unknown_quote"
                    ) =>
                {
                    return RedemptionState::NoHold
                }
                Err(e) => describe(&e),
            }
        }
    };
    // Decided by the payer's log.
    match c.redemption_status(&red).await {
        Ok(s) if s.status == "voided" => RedemptionState::Voided,
        Ok(s) if s.status == "posted" => match c.commit(&red).await {
            Ok(done) => {
                ack_commit(record, r, &done);
                RedemptionState::Committed(done.amount_minor)
            }
            Err(e) => RedemptionState::Stuck(format!(
                "posted at the payer, but the commit fails: {} (before: {first})",
                describe(&e)
            )),
        },
        Ok(s) if s.status == "open" => match c.void_redemption(&red).await {
            Ok(v) if v.status == "voided" => {
                if let Some(x) = &v.resolution {
                    record.acked(r.payer, "void", x);
                }
                RedemptionState::Voided
            }
            Ok(v) => RedemptionState::Stuck(format!(
                "open, and a void answered {} (before: {first})",
                v.status
            )),
            Err(e) => RedemptionState::Stuck(format!(
                "open, and the void fails: {} (before: {first})",
                describe(&e)
            )),
        },
        Ok(s) => RedemptionState::Stuck(format!("status {:?} (before: {first})", s.status)),
        Err(e)
            if matches!(
                error_code(&e).as_str(),
                "unknown_redemption" | "unknown_quote"
            ) =>
        {
            RedemptionState::NoHold
        }
        Err(e) => RedemptionState::Stuck(format!("no status: {} (before: {first})", describe(&e))),
    }
}

async fn resume_refunds(record: &Record, c: &sdk::Client, r: &Redemption) {
    for f in &r.refunds {
        if f.amount_minor.is_some() {
            continue;
        }
        let res = c
            .refund_at_partner(
                &id(&r.id),
                &sdk::federation::RefundRequest {
                    refund: id(&f.id),
                    points: sdk::Points::new(f.points).expect("points"),
                },
            )
            .await;
        let (amount, error) = match &res {
            Ok(done) => {
                record.acked(r.payer, "refund_payable", &done.payer);
                record.acked(r.payee, "refund_receivable", &done.receivable);
                (Some(done.amount_minor), None)
            }
            Err(e) => (None, Some(describe(e))),
        };
        record.with(|i| {
            if let Some(x) = i
                .redemptions
                .get_mut(&r.id)
                .and_then(|x| x.refunds.iter_mut().find(|x| x.id == f.id))
            {
                x.amount_minor = amount;
                x.last_error = error;
            }
        });
        if res.is_err() {
            return;
        }
    }
}
