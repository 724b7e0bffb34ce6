//! The campaign's workload: concurrent tasks, each drawing its operations from its own
//! generator (seeded from the campaign's seed and the task's number) and sending them to the
//! nodes through their apps' proxies until the deadline:
//!
//! - earns and redeems at any brand;
//! - local holds, then posted, voided, or left to expire (the node releases them);
//! - cross-brand redemptions over every pair, both ways: the payer logs a spend authorisation,
//!   then the payee either runs `redeem_at_partner` (quote, prepare, commit), perhaps followed
//!   by one or two refunds, or quotes, prepares and voids.
//!
//! Every operation's parameters are drawn before it runs, whatever the outcomes, so a seed
//! gives every task the same sequence of operations. Every acknowledged write is recorded with
//! its receipt, and every redemption with what became of it ([`super::record`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use super::record::{
    describe, HoldEnd, Intent, LocalHold, Record, Redemption, RedemptionState, RefundRec,
};
use super::{agreement_id, BrandInfo, BRANDS, MEMBERS_PER_BRAND};
use crate::harness::now_ms;

/// The longest one operation may take; an operation cut short is resumed at the end.
pub const OP_LIMIT: Duration = Duration::from_secs(60);
/// A local hold lives this long at least: more than the largest clock skew, so the hold's
/// expiry is in the future of a skewed node too.
pub const LOCAL_HOLD_TTL_MS_MIN: u64 = 22_000;
/// And at most this long.
pub const LOCAL_HOLD_TTL_MS_MAX: u64 = 30_000;
/// How long a spend authorisation lasts.
const AUTHORISATION_TTL_MS: u64 = 30 * 60 * 1000;
/// Mixed into the seed for each task's generator.
const SALT: u64 = 0x776f_726b_6c6f_6164;

/// One operation, with every parameter drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Earn {
        brand: usize,
        member: usize,
        points: u64,
    },
    Redeem {
        brand: usize,
        member: usize,
        points: u64,
    },
    Hold {
        brand: usize,
        member: usize,
        points: u64,
        ttl_ms: u64,
        end: HoldEnd,
        pause_ms: u64,
    },
    Cross {
        payer: usize,
        payee: usize,
        member: usize,
        points: u64,
        intent: Intent,
        pause_ms: u64,
        /// Points of each refund, in order (after a commit).
        refunds: Vec<u64>,
    },
}

fn draw(rng: &mut Xoshiro256PlusPlus) -> Op {
    let n = BRANDS.len();
    let brand = rng.random_range(0..n);
    let member = rng.random_range(0..MEMBERS_PER_BRAND);
    match rng.random_range(0..100) {
        0..25 => Op::Earn {
            brand,
            member,
            points: rng.random_range(1..=2_000),
        },
        25..35 => Op::Redeem {
            brand,
            member,
            points: rng.random_range(1..=300),
        },
        35..50 => Op::Hold {
            brand,
            member,
            points: rng.random_range(1..=300),
            ttl_ms: rng.random_range(LOCAL_HOLD_TTL_MS_MIN..=LOCAL_HOLD_TTL_MS_MAX),
            end: match rng.random_range(0..100) {
                0..45 => HoldEnd::Post,
                45..80 => HoldEnd::Void,
                _ => HoldEnd::Abandon,
            },
            pause_ms: rng.random_range(0..1_500),
        },
        _ => {
            let payee = (brand + rng.random_range(1..n)) % n;
            let points = rng.random_range(10..=400);
            let intent = if rng.random_bool(0.8) {
                Intent::Commit
            } else {
                Intent::Void
            };
            let refunds = match rng.random_range(0..100) {
                0..25 => vec![rng.random_range(1..=points)],
                25..35 => {
                    let first = rng.random_range(1..points);
                    vec![first, points - first]
                }
                _ => Vec::new(),
            };
            Op::Cross {
                payer: brand,
                payee,
                member,
                points,
                intent,
                pause_ms: rng.random_range(0..1_000),
                refunds,
            }
        }
    }
}

fn id(s: &str) -> sdk::EntryId {
    s.parse().expect("a valid entry id")
}

fn member_id(k: usize) -> sdk::MemberId {
    format!("m{k}").parse().expect("a valid member id")
}

fn points(p: u64) -> sdk::Points {
    sdk::Points::new(p).expect("valid points")
}

/// One workload task: runs operations until `deadline` (an operation started before it may
/// finish after it, within [`OP_LIMIT`]).
pub async fn worker(
    seed: u64,
    number: usize,
    brands: Arc<Vec<BrandInfo>>,
    record: Arc<Record>,
    deadline: Instant,
) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(
        seed ^ SALT ^ (number as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    let w = Worker {
        brands: brands.clone(),
        clients: brands.iter().map(BrandInfo::app_client).collect(),
        record,
    };
    let mut count: u64 = 0;
    while Instant::now() < deadline {
        let op = draw(&mut rng);
        let pause = Duration::from_millis(rng.random_range(0..60));
        let tag = format!("w{number}-{count}");
        count += 1;
        // Cut short, an operation leaves what it recorded so far (as unfinished).
        let _ = tokio::time::timeout(OP_LIMIT, w.run(&tag, op)).await;
        tokio::time::sleep(pause).await;
    }
}

struct Worker {
    brands: Arc<Vec<BrandInfo>>,
    clients: Vec<sdk::Client>,
    record: Arc<Record>,
}

impl Worker {
    async fn run(&self, tag: &str, op: Op) {
        match op {
            Op::Earn {
                brand,
                member,
                points: p,
            } => {
                self.record.op("earn");
                let r = self.clients[brand]
                    .earn(
                        &member_id(member),
                        &sdk::EarnRequest::new(id(&format!("e-{tag}")), points(p)),
                    )
                    .await;
                self.write_result(brand, "earn", r);
            }
            Op::Redeem {
                brand,
                member,
                points: p,
            } => {
                self.record.op("redeem");
                let r = self.clients[brand]
                    .redeem(
                        &member_id(member),
                        &sdk::RedeemRequest::new(id(&format!("r-{tag}")), points(p)),
                    )
                    .await;
                self.write_result(brand, "redeem", r);
            }
            Op::Hold {
                brand,
                member,
                points: p,
                ttl_ms,
                end,
                pause_ms,
            } => {
                self.hold(tag, brand, member, p, ttl_ms, end, pause_ms)
                    .await
            }
            Op::Cross {
                payer,
                payee,
                member,
                points: p,
                intent,
                pause_ms,
                refunds,
            } => {
                self.cross(tag, payer, payee, member, p, intent, pause_ms, refunds)
                    .await
            }
        }
    }

    /// Records an acknowledged write, or counts the failure; says whether it was acknowledged.
    fn write_result(
        &self,
        brand: usize,
        what: &'static str,
        r: Result<sdk::WriteResult, sdk::Error>,
    ) -> bool {
        match r {
            Ok(w) => {
                self.record.acked(brand, what, &w.receipt);
                true
            }
            Err(e) => {
                self.record.error(&e);
                false
            }
        }
    }

    /// Records a receipt of a cross-brand step after checking it against `brand`'s key.
    fn flow_receipt(&self, brand: usize, what: &'static str, r: &ledger::receipt::Receipt) {
        match r.verify(&self.brands[brand].verifier) {
            Ok(_) => self.record.acked(brand, what, r),
            Err(e) => self.record.with(|i| {
                i.violations.push(format!(
                    "a {what} receipt of {} does not verify: {e}",
                    BRANDS[brand]
                ))
            }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn hold(
        &self,
        tag: &str,
        brand: usize,
        member: usize,
        p: u64,
        ttl_ms: u64,
        end: HoldEnd,
        pause_ms: u64,
    ) {
        self.record.op("hold");
        let hold_id = format!("h-{tag}");
        let end_id = format!("he-{tag}");
        let expires_at = now_ms() + ttl_ms;
        let c = &self.clients[brand];
        let r = c
            .hold(
                &member_id(member),
                &sdk::HoldRequest::new(
                    id(&hold_id),
                    points(p),
                    sdk::LogTime::new(expires_at).expect("a log time"),
                ),
            )
            .await;
        let acked = self.write_result(brand, "hold", r);
        self.record.with(|i| {
            i.holds.insert(
                hold_id.clone(),
                LocalHold {
                    brand,
                    member: format!("m{member}"),
                    points: p,
                    expires_at,
                    intent: end,
                    end_id: end_id.clone(),
                    acked,
                    ended: false,
                    last_error: None,
                },
            )
        });
        if !acked || end == HoldEnd::Abandon {
            return;
        }
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        let r = match end {
            HoldEnd::Post => {
                self.record.op("hold_post");
                c.post_hold(&id(&hold_id), &sdk::PostRequest::new(id(&end_id)))
                    .await
            }
            _ => {
                self.record.op("hold_void");
                c.void_hold(&id(&hold_id), &sdk::VoidRequest { id: id(&end_id) })
                    .await
            }
        };
        let error = r.as_ref().err().map(describe);
        let what = if end == HoldEnd::Post { "post" } else { "void" };
        let ended = self.write_result(brand, what, r);
        self.record.with(|i| {
            if let Some(h) = i.holds.get_mut(&hold_id) {
                h.ended = ended;
                h.last_error = error;
            }
        });
    }

    #[allow(clippy::too_many_arguments)]
    async fn cross(
        &self,
        tag: &str,
        payer: usize,
        payee: usize,
        member: usize,
        p: u64,
        intent: Intent,
        pause_ms: u64,
        refunds: Vec<u64>,
    ) {
        self.record.op("cross_redemption");
        let auth = format!("a-{tag}");
        let red = format!("x-{tag}");
        let r = self.clients[payer]
            .authorise(
                &member_id(member),
                &sdk::AuthoriseRequest {
                    id: id(&auth),
                    payee: self.brands[payee].id(),
                    max_points: points(p),
                    expires_at: sdk::LogTime::new(now_ms() + AUTHORISATION_TTL_MS)
                        .expect("a log time"),
                },
            )
            .await;
        if !self.write_result(payer, "authorisation", r) {
            return;
        }
        let req = sdk::federation::RedeemAtPartner {
            redemption: id(&red),
            agreement: id(&agreement_id(payer, payee)),
            payer: self.brands[payer].id(),
            member: member_id(member),
            points: Some(points(p)),
            price_minor: None,
            authorisation: id(&auth),
        };
        self.record.with(|i| {
            i.redemptions.insert(
                red.clone(),
                Redemption {
                    id: red.clone(),
                    payer,
                    payee,
                    agreement: agreement_id(payer, payee),
                    member: format!("m{member}"),
                    points: p,
                    authorisation: auth.clone(),
                    intent,
                    state: RedemptionState::Unfinished("started".into()),
                    refunds: Vec::new(),
                    first_failure: None,
                },
            )
        });
        let c = &self.clients[payee];
        let state = match intent {
            Intent::Commit => match c.redeem_at_partner(&req).await {
                Ok(done) => {
                    self.committed((payer, payee), &done);
                    RedemptionState::Committed(done.amount_minor)
                }
                Err(e) => {
                    self.record.error(&e);
                    RedemptionState::Unfinished(describe(&e))
                }
            },
            Intent::Void => self.prepare_and_void((payer, payee), &req, pause_ms).await,
        };
        let committed = matches!(state, RedemptionState::Committed(_));
        self.set_state(&red, state);
        if !committed {
            return;
        }
        for (k, rp) in refunds.into_iter().enumerate() {
            self.record.op("refund");
            let rid = format!("xr-{tag}-{k}");
            self.record.with(|i| {
                if let Some(r) = i.redemptions.get_mut(&red) {
                    r.refunds.push(RefundRec {
                        id: rid.clone(),
                        points: rp,
                        amount_minor: None,
                        last_error: None,
                    });
                }
            });
            let r = c
                .refund_at_partner(
                    &req.redemption,
                    &sdk::federation::RefundRequest {
                        refund: id(&rid),
                        points: points(rp),
                    },
                )
                .await;
            let ok = r.is_ok();
            self.refunded((payer, payee), &red, &rid, r);
            if !ok {
                // The next refund waits for the end-of-run resume, in order.
                return;
            }
        }
    }

    async fn prepare_and_void(
        &self,
        (payer, payee): (usize, usize),
        req: &sdk::federation::RedeemAtPartner,
        pause_ms: u64,
    ) -> RedemptionState {
        let c = &self.clients[payee];
        let q = c
            .quote(&sdk::federation::QuoteRequest {
                redemption: req.redemption.clone(),
                agreement: req.agreement.clone(),
                payer: req.payer.clone(),
                member: req.member.clone(),
                points: req.points,
                price_minor: None,
                ttl_ms: None,
            })
            .await;
        match q {
            Ok(a) => self.flow_receipt(payee, "quote", &a.receipt),
            Err(e) => {
                self.record.error(&e);
                return RedemptionState::Unfinished(describe(&e));
            }
        }
        match c.prepare(&req.redemption, &req.authorisation).await {
            Ok(p) => self.flow_receipt(payer, "hold", &p.hold),
            Err(e) => {
                self.record.error(&e);
                return RedemptionState::Unfinished(describe(&e));
            }
        }
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        self.record.op("cross_void");
        match c.void_redemption(&req.redemption).await {
            Ok(s) if s.status == "voided" => {
                if let Some(r) = &s.resolution {
                    self.flow_receipt(payer, "void", r);
                }
                RedemptionState::Voided
            }
            Ok(s) => RedemptionState::Unfinished(format!("void answered {}", s.status)),
            Err(e) => {
                self.record.error(&e);
                RedemptionState::Unfinished(describe(&e))
            }
        }
    }

    fn committed(&self, (payer, payee): (usize, usize), done: &sdk::federation::Committed) {
        self.flow_receipt(payer, "post", &done.payer.post);
        self.flow_receipt(payer, "payable", &done.payer.payable);
        self.flow_receipt(payee, "receivable", &done.receivable);
    }

    fn refunded(
        &self,
        (payer, payee): (usize, usize),
        red: &str,
        refund: &str,
        r: Result<sdk::federation::Refunded, sdk::Error>,
    ) {
        let (amount, error) = match r {
            Ok(done) => {
                self.flow_receipt(payer, "refund_payable", &done.payer);
                self.flow_receipt(payee, "refund_receivable", &done.receivable);
                (Some(done.amount_minor), None)
            }
            Err(e) => {
                self.record.error(&e);
                (None, Some(describe(&e)))
            }
        };
        self.record.with(|i| {
            if let Some(rf) = i
                .redemptions
                .get_mut(red)
                .and_then(|r| r.refunds.iter_mut().find(|f| f.id == refund))
            {
                rf.amount_minor = amount;
                rf.last_error = error;
            }
        });
    }

    fn set_state(&self, red: &str, state: RedemptionState) {
        self.record.with(|i| {
            if let Some(r) = i.redemptions.get_mut(red) {
                if let RedemptionState::Unfinished(why) = &state {
                    r.first_failure.get_or_insert_with(|| why.clone());
                }
                r.state = state;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_draws_the_same_operations_from_a_seed() {
        let ops = |seed: u64| {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            (0..200).map(|_| draw(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(ops(1), ops(1));
        assert_ne!(ops(1), ops(2));
        for op in ops(3) {
            if let Op::Cross {
                payer,
                payee,
                points,
                refunds,
                ..
            } = op
            {
                assert_ne!(payer, payee);
                assert!(refunds.iter().sum::<u64>() <= points);
                assert!(refunds.iter().all(|&r| r > 0));
            }
        }
    }
}
