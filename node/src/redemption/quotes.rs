//! Quotes (spec/redemption.md §3, step 2): the redeeming brand (payee) prices a member's
//! redemption of a partner's (payer's) points from its **verified mirror** of the payer's log
//! (the rate card in force) and the agreement both logged, then logs the quote so that its
//! amounts stay locked, and retrievable, whatever rates come later.
//!
//! Invariants: only logged agreements in which this brand is the payee are used; rates come only
//! from this node's own log or a verified mirror, never from an unverified answer; the quote is
//! durable (logged) before it is returned.

use ledger::entry::EntryKind;
use ledger::quote::{make_quote, Ask, Pricing, Quote};
use ledger::state::{record_prefix, AgreementState, Policies, QuoteState};
use ledger::types::{BrandId, DurationMs, EntryId};
use ledger_store::log::{receipt_from_store, Write};

pub use loyalty_wire::redemption::{QuoteAnswer, QuoteRequest};

use crate::app::App;
use crate::redemption_error::RedemptionError;
use crate::views::store_record;

/// Default and largest lifetime of a quote.
pub const QUOTE_TTL_DEFAULT_MS: u64 = 5 * 60 * 1000;
pub const QUOTE_TTL_MAX_MS: u64 = 24 * 60 * 60 * 1000;

/// The policies (rate cards, FX rates) of `brand`'s log: this node's own, or its verified
/// mirror of a pinned partner's. Never an unverified answer.
pub(crate) fn policies_of(app: &App, brand: &BrandId) -> Result<Policies, RedemptionError> {
    let store = if *brand == app.federation.brand {
        app.store.clone()
    } else {
        app.federation
            .partner(brand)
            .and_then(|p| p.mirror_store.clone())
            .ok_or_else(|| RedemptionError::PartnerUnpinned(brand.clone()))?
    };
    Ok(store_record(&store, record_prefix::POLICIES, "")?.unwrap_or_default())
}

/// Whether `q` is the quote asking for `price` gives: the fewest points that pay the price, by
/// the quote's own recorded inputs (its rate card and FX entry by index, not by time, so a mirror
/// that caught up since cannot make a retry look different).
fn answers_price(app: &App, q: &Quote, price: u64) -> Result<bool, RedemptionError> {
    use ledger::value::{points_for_price, Valuation};
    let payer = policies_of(app, &q.payer)?;
    let Some((_, card)) = payer
        .rate_cards
        .iter()
        .find(|(i, _)| i.get() == q.rate_card_index)
    else {
        return Ok(false);
    };
    let fx = match q.fx_rate_index {
        None => None,
        Some(fi) => {
            let a: AgreementState =
                store_record(&app.store, record_prefix::AGREEMENT, q.agreement.as_str())?
                    .ok_or_else(|| RedemptionError::internal("a quote without its agreement"))?;
            let source = policies_of(app, &a.agreement.terms.fx_source)?;
            match source.fx_rates.iter().find(|(i, _)| i.get() == fi) {
                Some((_, r)) => Some(r.rate),
                None => return Ok(false),
            }
        }
    };
    let v = Valuation {
        point_value: card.point_value,
        base: card.currency,
        fx,
        settlement: q.currency,
        fee_bps: q.fee_bps,
        rounding: q.rounding,
    };
    Ok(points_for_price(price, &v).is_ok_and(|p| p == q.points))
}

/// Quotes redemption `b` (idempotent by its id): the quote logged before, or a new one,
/// priced from the verified mirror and logged.
pub(super) async fn quote(app: &App, b: QuoteRequest) -> Result<QuoteAnswer, RedemptionError> {
    let ask = match (b.points, b.price_minor) {
        (Some(p), None) => Ask::Points(p),
        (None, Some(m)) => Ask::PriceMinor(m),
        _ => {
            return Err(RedemptionError::InvalidBody(
                "give exactly one of `points` and `price_minor`".into(),
            ))
        }
    };
    super::redeem::check_redemption_id(&b.redemption)?;
    let ttl = b.ttl_ms.unwrap_or(QUOTE_TTL_DEFAULT_MS);
    if !(1..=QUOTE_TTL_MAX_MS).contains(&ttl) {
        return Err(RedemptionError::InvalidBody(
            "ttl_ms must be 1 to 86400000".into(),
        ));
    }
    // Idempotent by redemption id: the quote logged before is the answer (concurrent first
    // requests are serialised so that they agree on one quote).
    let _guard = app.federation.prepare_lock.lock().await;
    let existing: Option<QuoteState> =
        store_record(&app.store, record_prefix::QUOTE, b.redemption.as_str())?;
    if let Some(e) = existing {
        let q = &e.quote;
        let same = q.agreement == b.agreement
            && q.payer == b.payer
            && q.member == b.member
            && match ask {
                Ask::Points(p) => q.points == p,
                Ask::PriceMinor(price) => answers_price(app, q, price)?,
            };
        if !same {
            return Err(RedemptionError::IdConflict(format!(
                "redemption {} was quoted with other terms",
                b.redemption
            )));
        }
        return answer(app, &b.redemption, None);
    }
    let fed = &app.federation;
    let me = fed.brand.clone();
    let agreement: AgreementState =
        store_record(&app.store, record_prefix::AGREEMENT, b.agreement.as_str())?.ok_or_else(
            || RedemptionError::UnknownAgreement(format!("no agreement {}", b.agreement)),
        )?;
    let terms = &agreement.agreement.terms;
    if !terms.allows(&b.payer, &me) {
        return Err(RedemptionError::QuoteDirectionNotAgreed(format!(
            "agreement {} does not redeem {} points at {me}",
            b.agreement, b.payer
        )));
    }
    // The payer's rate card, from the verified mirror.
    let now = crate::sequencer::now();
    let payer_policies = policies_of(app, &b.payer)?;
    let (card_index, card) = payer_policies.rate_card_at(None, now).ok_or_else(|| {
        RedemptionError::NoRateCard(format!(
            "the verified mirror of {} holds no rate card in force",
            b.payer
        ))
    })?;
    let fx = if card.currency == terms.settlement_currency {
        None
    } else {
        let source = policies_of(app, &terms.fx_source)?;
        let (i, r) = source
            .fx_rate_at(card.currency, terms.settlement_currency, now)
            .ok_or_else(|| {
                RedemptionError::NoFxRate(format!(
                    "no {}→{} rate of {} in force",
                    card.currency, terms.settlement_currency, terms.fx_source
                ))
            })?;
        Some((i.get(), r.rate))
    };
    let pricing = Pricing {
        rate_card_index: card_index.get(),
        point_value: card.point_value,
        base: card.currency,
        fx,
    };
    let q = make_quote(
        terms,
        b.redemption.clone(),
        b.member.clone(),
        &b.payer,
        &me,
        ask,
        &pricing,
        now,
        DurationMs::new(ttl).map_err(|e| RedemptionError::InvalidBody(e.to_string()))?,
    )
    .map_err(RedemptionError::Quote)?;
    let committed = app
        .sequencer
        .submit(Write {
            id: b.redemption.clone(),
            kind: EntryKind::Quote(q),
        })
        .await?;
    answer(app, &b.redemption, Some(committed))
}

/// The logged quote of redemption `id` with its receipt (under the checkpoint that
/// `committed` signed, or the latest).
pub(super) fn answer(
    app: &App,
    id: &EntryId,
    committed: Option<crate::sequencer::Committed>,
) -> Result<QuoteAnswer, RedemptionError> {
    let q: QuoteState = store_record(&app.store, record_prefix::QUOTE, id.as_str())?
        .ok_or_else(|| RedemptionError::UnknownQuote(id.clone()))?;
    let (size, note) = match committed {
        Some(c) => (c.checkpoint.size, c.checkpoint.note.clone()),
        None => {
            let cp = app.shared.checkpoint();
            (cp.size, cp.note.clone())
        }
    };
    let receipt = receipt_from_store(&app.store, q.index.get(), size, &note)
        .map_err(RedemptionError::internal)?;
    Ok(QuoteAnswer {
        live: q.quote.is_live(crate::sequencer::now()),
        quote: q.quote,
        receipt,
    })
}
