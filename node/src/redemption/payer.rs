//! The payer's side of a cross-brand redemption: the signed peer routes a payee calls
//! (prepare, status, void, commit), and the payer's rules on a partner's prepare and commit
//! (spec/redemption.md §3.1): the payee chooses the quote's times and the hold's expiry, so the
//! payer bounds them by its own clock and its own limits, and commits only the quote it
//! prepared.
//!
//! Invariants: A (the payer) holds points only for a pinned, unfrozen partner that is the
//! quote's payee, under an agreement A logged, with the member's unused authorisation for that
//! partner (the state machine enforces the authorisation), and at A's own valuation; every step
//! is idempotent by redemption id. A hold for a partner is logged only for a quote made no later
//! than the peer clock-skew allowance from now and no earlier than the longest quote lifetime
//! before it, whose lifetime is positive and at most [`QUOTE_TTL_MAX_MS`], and with an expiry
//! after now, at most the quote's and at most [`HOLD_TTL_MAX_MS`] (plus the skew allowance)
//! from now; the digest of that quote is stored (synced) before the hold is logged, and a
//! commit whose quote has another digest is refused.

use sha2::{Digest, Sha256};

use ledger::entry::{EntryKind, HexHash};
use ledger::quote::{make_quote, Ask, Pricing, Quote};
use ledger::receipt::Receipt;
use ledger::state::{record_prefix, AgreementState, StateError};
use ledger::types::{EntryId, LogTime};
use ledger_store::log::{receipt_from_store, Write, WriteError};
use ledger_store::store::Store;

use super::quotes::{policies_of, QUOTE_TTL_MAX_MS};
use super::redeem::*;
use crate::app::App;
use crate::federation::Partner;
use crate::redemption_error::RedemptionError;
use crate::sequencer::SubmitError;
use crate::views::store_record;

const QUOTE_DIGEST_PREFIX: &[u8] = b"payer-quote-digest/";

/// Checks the times of a partner's prepare against this node's clock `now` (payer rules 1-3).
pub fn check_prepare_times(
    quote: &Quote,
    hold_expires_at: LogTime,
    now: LogTime,
    skew_ms: u64,
) -> Result<(), RedemptionError> {
    let (now, quoted, expires) = (now.get(), quote.quoted_at.get(), quote.expires_at.get());
    let out = RedemptionError::QuoteOutOfBounds;
    let lifetime = expires
        .checked_sub(quoted)
        .filter(|l| *l > 0)
        .ok_or_else(|| out("the quote must expire after it was made".into()))?;
    if lifetime > QUOTE_TTL_MAX_MS {
        return Err(out(format!(
            "a quote lives at most {QUOTE_TTL_MAX_MS} ms, not {lifetime}"
        )));
    }
    if quoted > now.saturating_add(skew_ms) {
        return Err(out(format!(
            "the quote is dated {} ms ahead of this node's clock (at most {skew_ms})",
            quoted - now
        )));
    }
    if quoted < now.saturating_sub(QUOTE_TTL_MAX_MS.saturating_add(skew_ms)) {
        return Err(out(
            "the quote is dated earlier than the longest quote lifetime before now".into(),
        ));
    }
    let hold = hold_expires_at.get();
    let hold_out = RedemptionError::HoldOutOfBounds;
    if hold <= now {
        return Err(hold_out("the hold would expire before it is made".into()));
    }
    if hold > expires {
        return Err(hold_out("the hold must not outlive the quote".into()));
    }
    let latest = now.saturating_add(HOLD_TTL_MAX_MS).saturating_add(skew_ms);
    if hold > latest {
        return Err(hold_out(format!(
            "a hold lasts at most {HOLD_TTL_MAX_MS} ms (plus {skew_ms} ms of clock skew)"
        )));
    }
    Ok(())
}

/// The digest of a quote as this node decoded it (its JSON with the fields in declaration
/// order, so equal quotes have equal digests).
pub fn quote_digest(quote: &Quote) -> Result<[u8; 32], RedemptionError> {
    let bytes = serde_json::to_vec(quote).map_err(RedemptionError::internal)?;
    Ok(Sha256::digest(bytes).into())
}

fn key(redemption: &EntryId) -> Vec<u8> {
    [QUOTE_DIGEST_PREFIX, redemption.as_str().as_bytes()].concat()
}

/// Keeps the digest of the quote a hold is made for (synced), before the hold is logged; a
/// prepare of the same redemption with another quote is refused (payer rule 4). Callers hold
/// a lock across check and store.
pub fn keep_quote_digest(store: &Store, quote: &Quote) -> Result<(), RedemptionError> {
    let digest = quote_digest(quote)?;
    let key = key(&quote.redemption);
    match store.local_get(&key).map_err(RedemptionError::internal)? {
        Some(kept) if kept.as_slice() == digest.as_slice() => Ok(()),
        Some(_) => Err(RedemptionError::IdConflict(
            "this redemption was prepared with another quote".into(),
        )),
        None => store
            .local_put(&key, &digest)
            .map_err(RedemptionError::internal),
    }
}

/// Whether `quote` is exactly the quote the hold of its redemption was prepared with:
/// `Some(true)` or `Some(false)`, or `None` for a hold prepared before digests were kept.
pub fn is_prepared_quote(store: &Store, quote: &Quote) -> Result<Option<bool>, RedemptionError> {
    let kept = store
        .local_get(&key(&quote.redemption))
        .map_err(RedemptionError::internal)?;
    Ok(match kept {
        None => None,
        Some(k) => Some(k.as_slice() == quote_digest(quote)?.as_slice()),
    })
}

/// The payer's side of prepare (a signed peer request of `sender`): checks the quote against
/// its own log and holds.
pub(super) async fn prepare(
    app: &App,
    sender: &Partner,
    req: PrepareRequest,
) -> Result<Receipt, RedemptionError> {
    let fed = &app.federation;
    let q = &req.quote;
    check_redemption_id(&q.redemption)?;
    if q.payee != sender.brand || q.payer != fed.brand {
        return Err(RedemptionError::QuoteWrongParties);
    }
    // A retry of a logged hold is answered from the log (idempotent), whatever time it is now.
    let logged: Option<ledger::state::IdRecord> =
        store_record(&app.store, record_prefix::ID, q.redemption.as_str())?;
    if logged.is_none() {
        // Payer rules (spec/redemption.md §3.1): the payee's times, bounded by this clock.
        let now = crate::sequencer::now();
        check_prepare_times(q, req.expires_at, now, fed.settings.peer_clock_skew_ms)?;
        check_valuation(app, q, true)?;
    }
    {
        // The quote's digest is kept with the hold, so that only this quote can commit it; a
        // retry of a logged hold must carry the same quote (a hold logged before digests were
        // kept gets none now: its commit is re-priced field by field).
        let _guard = fed.payer_prepare_lock.lock().await;
        if logged.is_none() {
            keep_quote_digest(&app.store, q)?;
        } else if is_prepared_quote(&app.store, q)? == Some(false) {
            return Err(RedemptionError::IdConflict(
                "this redemption was prepared with another quote".into(),
            ));
        }
    }
    let committed = app
        .sequencer
        .submit(Write {
            id: q.redemption.clone(),
            kind: hold_of(&req),
        })
        .await?;
    crate::fault::point("payer_hold_logged");
    let receipt = receipt_from_store(
        &app.store,
        committed.index,
        committed.checkpoint.size,
        &committed.checkpoint.note,
    )
    .map_err(RedemptionError::internal)?;
    tracing::info!(redemption = %q.redemption, partner = %sender.brand, points = q.points.get(),
        "points held for a partner");
    Ok(receipt)
}

/// The payer recomputes the quote from its own log: same agreement, the rate card and FX rate
/// in force at the quote's time, the same amount.
fn check_valuation(app: &App, q: &Quote, require_live: bool) -> Result<(), RedemptionError> {
    let agreement: AgreementState =
        store_record(&app.store, record_prefix::AGREEMENT, q.agreement.as_str())?.ok_or_else(
            || RedemptionError::AgreementNotHere(format!("no agreement {} here", q.agreement)),
        )?;
    let terms = &agreement.agreement.terms;
    let policies = policies_of(app, &app.federation.brand)?;
    let mismatch = |detail: &str| RedemptionError::QuoteMismatch(detail.into());
    let (card_index, card) = policies
        .rate_card_at(None, q.quoted_at)
        .ok_or_else(|| mismatch("no rate card in force at the quote's time"))?;
    if card_index.get() != q.rate_card_index {
        return Err(RedemptionError::QuoteMismatch(format!(
            "the quote used rate card {} but {} was in force",
            q.rate_card_index,
            card_index.get()
        )));
    }
    let fx = match (card.currency == terms.settlement_currency, q.fx_rate_index) {
        (true, None) => None,
        (false, Some(i)) => {
            // The FX source's rate: this log's, or the verified mirror of the payee's.
            let source = policies_of(app, &terms.fx_source)
                .map_err(|_| mismatch("FX source not mirrored"))?;
            let (fi, r) = source
                .fx_rate_at(card.currency, terms.settlement_currency, q.quoted_at)
                .ok_or_else(|| mismatch("no FX rate in force"))?;
            if fi.get() != i {
                return Err(mismatch("another FX rate was in force"));
            }
            Some((i, r.rate))
        }
        _ => return Err(mismatch("FX use does not fit the currencies")),
    };
    let pricing = Pricing {
        rate_card_index: card_index.get(),
        point_value: card.point_value,
        base: card.currency,
        fx,
    };
    let mine = make_quote(
        terms,
        q.redemption.clone(),
        q.member.clone(),
        &q.payer,
        &q.payee,
        Ask::Points(q.points),
        &pricing,
        q.quoted_at,
        q.expires_at
            .get()
            .checked_sub(q.quoted_at.get())
            .and_then(|l| ledger::types::DurationMs::new(l).ok())
            .ok_or_else(|| mismatch("bad quote lifetime"))?,
    )
    .map_err(RedemptionError::Quote)?;
    if &mine != q {
        return Err(mismatch("the quote does not match this brand's valuation"));
    }
    if require_live && !q.is_live(crate::sequencer::now()) {
        return Err(RedemptionError::QuoteExpired("the quote expired"));
    }
    Ok(())
}

/// Redemption `id` of `payee` as this (the payer's) log shows it.
pub(super) fn status_at_payer(
    app: &App,
    id: &EntryId,
    payee: &ledger::types::BrandId,
) -> Result<RedemptionStatus, RedemptionError> {
    use ledger::state::{HoldState, HoldStatus};
    let h: HoldState = store_record(&app.store, record_prefix::HOLD, id.as_str())?
        .filter(|h: &HoldState| h.payee.as_ref() == Some(payee))
        .ok_or_else(|| RedemptionError::UnknownRedemption(format!("no hold {id} for {payee}")))?;
    let cp = app.shared.checkpoint();
    let receipt = |i: u64| {
        receipt_from_store(&app.store, i, cp.size, &cp.note).map_err(RedemptionError::internal)
    };
    let (status, resolved) = match h.status {
        HoldStatus::Open => ("open", None),
        HoldStatus::Posted(i) => ("posted", Some(i.get())),
        HoldStatus::Voided(i) => ("voided", Some(i.get())),
    };
    Ok(RedemptionStatus {
        redemption: id.to_string(),
        status: status.into(),
        points: h.points,
        expires_at: h.expires_at.get(),
        hold: receipt(h.index.get())?,
        resolution: resolved.map(receipt).transpose()?,
    })
}

/// The payer's side of void (a signed peer request of `sender`, the payee): the hold is voided
/// (idempotent) unless it was posted.
pub(super) async fn void(
    app: &App,
    sender: &Partner,
    id: EntryId,
) -> Result<RedemptionStatus, RedemptionError> {
    check_redemption_id(&id)?;
    let before = status_at_payer(app, &id, &sender.brand)?;
    if before.status == "open" {
        let void_id = derived_id("void", &id)?;
        match app
            .sequencer
            .submit(Write {
                id: void_id,
                kind: EntryKind::Void(ledger::entry::Void { hold: id.clone() }),
            })
            .await
        {
            Ok(_) => {}
            // Released meanwhile by the payer's housekeeping: the status says so.
            Err(SubmitError::Refused(WriteError::State(StateError::HoldNotOpen { .. }))) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let after = status_at_payer(app, &id, &sender.brand)?;
    if after.status == "posted" {
        return Err(RedemptionError::HoldNotOpen(
            "the redemption was committed; refund it instead".into(),
        ));
    }
    Ok(after)
}

/// The payer's side of commit (a signed peer request of `sender`, the payee): posts the hold
/// with the preimage and logs the payable obligation in the same batch.
pub(super) async fn commit(
    app: &App,
    sender: &Partner,
    id: EntryId,
    req: CommitRequest,
) -> Result<PayerCommit, RedemptionError> {
    use ledger::state::{HoldState, HoldStatus, ObligationState};
    let fed = &app.federation;
    check_redemption_id(&id)?;
    let q = &req.quote;
    let h: HoldState = store_record(&app.store, record_prefix::HOLD, id.as_str())?
        .filter(|h: &HoldState| h.payee.as_ref() == Some(&sender.brand))
        .ok_or_else(|| {
            RedemptionError::UnknownRedemption(format!("no hold {id} for {}", sender.brand))
        })?;
    if q.redemption != id
        || q.payee != sender.brand
        || q.payer != fed.brand
        || q.points.get() != h.points
        || q.member != h.member
    {
        return Err(RedemptionError::QuoteMismatch(
            "the quote is not the one this hold was made for".into(),
        ));
    }
    // Exactly the prepared quote (payer rule 4); a hold prepared before digests were kept
    // falls back to the checks above and the re-pricing below.
    if is_prepared_quote(&app.store, q)? == Some(false) {
        return Err(RedemptionError::QuoteMismatch(
            "the quote is not the one this hold was prepared with".into(),
        ));
    }
    let obl_id = obligation_id(&id)?;
    let receipts = |post_index: u64| -> Result<PayerCommit, RedemptionError> {
        let o: ObligationState = store_record(
            &app.store,
            record_prefix::OBLIGATION,
            &format!("payable/{}/{id}", fed.brand),
        )?
        .ok_or_else(|| RedemptionError::internal("a posted partner hold without its payable"))?;
        let cp = app.shared.checkpoint();
        let r = |i: u64| {
            receipt_from_store(&app.store, i, cp.size, &cp.note).map_err(RedemptionError::internal)
        };
        Ok(PayerCommit {
            post: r(post_index)?,
            payable: r(o.index.get())?,
        })
    };
    match h.status {
        HoldStatus::Posted(i) => return receipts(i.get()),
        HoldStatus::Voided(_) => {
            return Err(RedemptionError::HoldNotOpen(
                "the hold was voided or released; nothing was committed".into(),
            ))
        }
        HoldStatus::Open => {}
    }
    if h.condition != Some(HexHash(Sha256::digest(&req.preimage.0).into())) {
        return Err(RedemptionError::ConditionNotMet);
    }
    // Re-priced from this log (not the quote's liveness: the hold's expiry, judged by this
    // log's time when the post is applied, governs now).
    check_valuation(app, q, false)?;
    crate::fault::delay("payer_commit_checked").await;
    // The post and the payable are one linked chain: both are logged or neither is. The state
    // machine refuses the payable past the agreement's credit limit (`credit_limit_exceeded`)
    // and the post past the hold's expiry; then the hold stays as it was. A duplicate commit
    // finds both logged (`existing`).
    let committed = app
        .sequencer
        .submit_linked(vec![
            Write {
                id: derived_id("post", &id)?,
                kind: EntryKind::Post(ledger::entry::Post {
                    hold: id.clone(),
                    preimage: Some(req.preimage.clone()),
                }),
            },
            Write {
                id: obl_id,
                kind: EntryKind::Obligation(ledger::entry::Obligation {
                    side: ledger::entry::ObligationSide::Payable,
                    quote: q.clone(),
                    counterpart: None,
                }),
            },
        ])
        .await?;
    crate::fault::point("payer_commit_logged");
    let post = committed
        .first()
        .ok_or_else(|| RedemptionError::internal("no answer"))?;
    tracing::info!(redemption = %id, partner = %sender.brand, amount = q.amount_minor, "committed");
    receipts(post.index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(quoted_at: u64, expires_at: u64) -> Quote {
        serde_json::from_value(serde_json::json!({
            "redemption": "r1", "agreement": "a1", "payer": "air", "payee": "coffee",
            "member": "alice", "points": 1000, "amount_minor": 1000, "currency": "EUR",
            "rate_card_index": 3, "fee_bps": 0, "rounding": "half_even",
            "quoted_at": quoted_at, "expires_at": expires_at
        }))
        .unwrap()
    }

    fn t(ms: u64) -> LogTime {
        LogTime::new(ms).unwrap()
    }

    const NOW: u64 = 1_800_000_000_000;
    const SKEW: u64 = 60_000;

    fn code(r: Result<(), RedemptionError>) -> &'static str {
        match r {
            Ok(()) => "ok",
            Err(RedemptionError::QuoteOutOfBounds(_)) => "quote_out_of_bounds",
            Err(RedemptionError::HoldOutOfBounds(_)) => "hold_out_of_bounds",
            Err(e) => panic!("not a refusal of the prepare's times: {e:?}"),
        }
    }

    #[test]
    fn honest_prepare_passes() {
        let q = quote(NOW - 1000, NOW + 299_000);
        assert_eq!(
            code(check_prepare_times(&q, t(NOW + 60_000), t(NOW), SKEW)),
            "ok"
        );
    }

    #[test]
    fn quote_times_are_bounded_by_the_payers_clock() {
        let ten_years = 10 * 365 * 86_400_000;
        let back_dated = quote(NOW - 3_600_000, NOW + ten_years);
        assert_eq!(
            code(check_prepare_times(
                &back_dated,
                t(NOW + 60_000),
                t(NOW),
                SKEW
            )),
            "quote_out_of_bounds"
        );
        let future = quote(NOW + 600_000, NOW + 900_000);
        assert_eq!(
            code(check_prepare_times(&future, t(NOW + 700_000), t(NOW), SKEW)),
            "quote_out_of_bounds"
        );
        let ancient = quote(NOW - 2 * QUOTE_TTL_MAX_MS, NOW - QUOTE_TTL_MAX_MS);
        assert_eq!(
            code(check_prepare_times(&ancient, t(NOW + 1), t(NOW), SKEW)),
            "quote_out_of_bounds"
        );
        // Expiry before the quote's time: refused, not an overflow.
        let inverted = quote(NOW, NOW - 1);
        assert_eq!(
            code(check_prepare_times(&inverted, t(NOW + 1), t(NOW), SKEW)),
            "quote_out_of_bounds"
        );
    }

    #[test]
    fn hold_expiry_is_bounded_by_the_quote_and_the_hold_limit() {
        let q = quote(NOW, NOW + QUOTE_TTL_MAX_MS);
        let too_long = NOW + HOLD_TTL_MAX_MS + SKEW + 1;
        assert_eq!(
            code(check_prepare_times(&q, t(too_long), t(NOW), SKEW)),
            "hold_out_of_bounds"
        );
        let short = quote(NOW, NOW + 60_000);
        assert_eq!(
            code(check_prepare_times(&short, t(NOW + 60_001), t(NOW), SKEW)),
            "hold_out_of_bounds"
        );
        assert_eq!(
            code(check_prepare_times(&short, t(NOW), t(NOW), SKEW)),
            "hold_out_of_bounds"
        );
    }

    #[test]
    fn equal_quotes_have_equal_digests() {
        let a = quote(NOW, NOW + 1000);
        let mut b = a.clone();
        assert_eq!(quote_digest(&a).unwrap(), quote_digest(&b).unwrap());
        b.amount_minor = 5000;
        assert_ne!(quote_digest(&a).unwrap(), quote_digest(&b).unwrap());
    }
}
