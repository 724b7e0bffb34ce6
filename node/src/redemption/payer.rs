//! The payer's rules on a partner's prepare and commit (spec/redemption.md §3.1): the payee
//! chooses the quote's times and the hold's expiry, so the payer bounds them by its own clock
//! and its own limits, and commits only the quote it prepared.
//!
//! Invariants: a hold for a partner is logged only for a quote made no later than the peer
//! clock-skew allowance from now and no earlier than the longest quote lifetime before it,
//! whose lifetime is positive and at most [`QUOTE_TTL_MAX_MS`], and with an expiry after now,
//! at most the quote's and at most [`HOLD_TTL_MAX_MS`] (plus the skew allowance) from now;
//! the digest of that quote is stored (synced) before the hold is logged, and a commit whose
//! quote has another digest is refused.

use axum::http::StatusCode;
use sha2::{Digest, Sha256};

use ledger::quote::Quote;
use ledger::store::Store;
use ledger::types::{EntryId, LogTime};

use super::quotes::QUOTE_TTL_MAX_MS;
use super::redeem::{unprocessable, HOLD_TTL_MAX_MS};
use crate::problem::ApiError;

const QUOTE_DIGEST_PREFIX: &[u8] = b"payer-quote-digest/";

/// Checks the times of a partner's prepare against this node's clock `now` (payer rules 1-3).
pub fn check_prepare_times(
    quote: &Quote,
    hold_expires_at: LogTime,
    now: LogTime,
    skew_ms: u64,
) -> Result<(), ApiError> {
    let (now, quoted, expires) = (now.get(), quote.quoted_at.get(), quote.expires_at.get());
    let out = |detail: String| unprocessable("quote_out_of_bounds", detail);
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
    let hold_out = |detail: String| unprocessable("hold_out_of_bounds", detail);
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
pub fn quote_digest(quote: &Quote) -> Result<[u8; 32], ApiError> {
    let bytes = serde_json::to_vec(quote).map_err(ApiError::internal)?;
    Ok(Sha256::digest(bytes).into())
}

fn key(redemption: &EntryId) -> Vec<u8> {
    [QUOTE_DIGEST_PREFIX, redemption.as_str().as_bytes()].concat()
}

/// Keeps the digest of the quote a hold is made for (synced), before the hold is logged; a
/// prepare of the same redemption with another quote is refused (payer rule 4). Callers hold
/// a lock across check and store.
pub fn keep_quote_digest(store: &Store, quote: &Quote) -> Result<(), ApiError> {
    let digest = quote_digest(quote)?;
    let key = key(&quote.redemption);
    match store.local_get(&key).map_err(ApiError::internal)? {
        Some(kept) if kept.as_slice() == digest.as_slice() => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "id_conflict",
            "this redemption was prepared with another quote",
        )),
        None => store.local_put(&key, &digest).map_err(ApiError::internal),
    }
}

/// Whether `quote` is exactly the quote the hold of its redemption was prepared with:
/// `Some(true)` or `Some(false)`, or `None` for a hold prepared before digests were kept.
pub fn is_prepared_quote(store: &Store, quote: &Quote) -> Result<Option<bool>, ApiError> {
    let kept = store
        .local_get(&key(&quote.redemption))
        .map_err(ApiError::internal)?;
    Ok(match kept {
        None => None,
        Some(k) => Some(k.as_slice() == quote_digest(quote)?.as_slice()),
    })
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

    fn code(r: Result<(), ApiError>) -> &'static str {
        r.err().map_or("ok", |e| e.code)
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
