//! Checkpoints with their cosignatures, and partners with sync lag and evidence.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;

use ledger::checkpoint::open_checkpoint;
use ledger::types::BrandId;

use maud::html;

use super::html::{self, badge, card, int, link, pager, query, url_component, Html, Section};
use super::{path_param, serve, App, Page, PageError, Params, PAGE_ROWS_MAX, SCAN_MAX};
use crate::api::AppState;
use crate::federation::reconcile::agreements_with;
use crate::federation::routes::{cosigned_checkpoint, status, PartnerStatus};
use crate::federation::{witness, Evidence};
use crate::log_routes::checkpoints_page;
use crate::problem::ApiError;

/// `GET /explorer/checkpoints?after=`: the latest cosigned checkpoint, then every signed
/// checkpoint by size with the cosignatures gathered for it.
pub(crate) async fn checkpoints(
    State(app): AppState,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let params = Params::from_query(q);
    serve(app, move |app, ctx| {
        let p = params?;
        let after: Option<u64> = p.parse("after")?;
        let page = checkpoints_page(app, after, PAGE_ROWS_MAX)?;
        let cosigned = cosigned_checkpoint(app);
        let quorum = app.federation.settings.witness_quorum;
        let finality = if quorum == 0 {
            "No witness quorum is set (federation.witness_quorum = 0): a checkpoint is final \
             once signed."
                .to_string()
        } else {
            format!(
                "A checkpoint is final with {quorum} cosignature{}.",
                if quorum == 1 { "" } else { "s" }
            )
        };
        let next = page.next_cursor.as_ref().map(|c| {
            format!(
                "/explorer/checkpoints{}",
                query(&[("after", Some(c.clone()))])
            )
        });
        let first = after.map(|_| "/explorer/checkpoints".to_string());
        let nav = pager(&[("« first", first), ("next »", next)]);
        let mut rows = Vec::with_capacity(page.checkpoints.len());
        for c in &page.checkpoints {
            let (root, sig) = match open_checkpoint(&c.note, &ctx.verifier) {
                Ok((cp, _)) => (hex::encode(cp.root), badge("ok", "valid")),
                Err(e) => (String::new(), badge("bad", &e.to_string())),
            };
            let cosigners = witness::cosigned_at(app.federation.store(), c.size)
                .map_err(ApiError::internal)?
                .map(|w| w.cosigners)
                .unwrap_or_default();
            rows.push((c.size, root, sig, cosigners));
        }
        let b = html! {
            h1 { "Checkpoints" }
            p class="lead" {
                "Every checkpoint this node signed, by tree size, and the cosignatures its \
                 partners' witnesses returned (spec/federation.md §4). " (finality)
            }
            div class="cards" {
                (card(
                    "latest signed size",
                    html! {
                        div class="value" data-latest-size=(ctx.checkpoint.size) {
                            (int(ctx.checkpoint.size))
                        }
                    },
                ))
                (card(
                    "cosigned size",
                    html! {
                        div class="value" id="cosigned-size" data-cosigned-size=(cosigned.size) {
                            (int(cosigned.size))
                        }
                    },
                ))
                (card(
                    "cosigners",
                    html! {
                        div class="value" id="cosigners"
                            data-cosigners=(cosigned.cosigners.join(",")) data-final=(cosigned.is_final) {
                            (cosigned.cosigners.len())
                            @if cosigned.is_final { " · final" } @else { " · not final" }
                        }
                    },
                ))
            }
            h2 { "Latest cosigned checkpoint" }
            pre id="cosigned-note" { (cosigned.note) }
            h2 { "Signed checkpoints" }
            (nav)
            table id="checkpoints" {
                thead { tr {
                    th class="num" { "size" } th { "root hash" } th { "signature" }
                    th { "cosigned by" }
                } }
                tbody {
                    @for (size, root, sig, cosigners) in &rows {
                        tr data-size=(size) data-cosigners=(cosigners.len()) {
                            td class="num" { (int(*size)) }
                            td class="hash" { (root) }
                            td { (sig) }
                            td {
                                @if cosigners.is_empty() {
                                    span class="muted" { "—" }
                                } @else {
                                    (cosigners.join(", "))
                                }
                            }
                        }
                    }
                }
            }
            (nav)
        };
        Ok(Page {
            section: Section::Checkpoints,
            name: "checkpoints",
            title: "Checkpoints".into(),
            body: b.into(),
        })
    })
    .await
}

fn yes_no(v: bool, yes: (&str, &str), no: (&str, &str)) -> Html {
    let (class, text) = if v { yes } else { no };
    badge(class, text)
}

fn last_sync(p: &PartnerStatus) -> String {
    p.last_sync_ms.map_or_else(|| "never".into(), html::time)
}

/// The evidence of `brand` (or all), oldest first, at most `rows`, reading at most
/// [`SCAN_MAX`] records.
fn evidence_of(
    app: &App,
    brand: Option<&BrandId>,
    rows: usize,
) -> Result<Vec<Evidence>, PageError> {
    let mut out = Vec::new();
    let mut after = None;
    let mut read = 0;
    while read < SCAN_MAX && out.len() < rows {
        let batch = app
            .federation
            .evidence(after, PAGE_ROWS_MAX)
            .map_err(ApiError::internal)?;
        read += batch.len();
        let done = batch.len() < PAGE_ROWS_MAX;
        after = batch.last().map(|e| e.id);
        out.extend(
            batch
                .into_iter()
                .filter(|e| brand.is_none_or(|b| e.brand == b.as_str())),
        );
        if done {
            break;
        }
    }
    out.truncate(rows);
    Ok(out)
}

fn evidence_table(list: &[Evidence]) -> Html {
    if list.is_empty() {
        return html! {
            p class="muted" id="evidence" data-count="0" {
                "No evidence: no partner served anything contradicting what it signed."
            }
        }
        .into();
    }
    html! {
        table id="evidence" data-count=(list.len()) {
            thead { tr {
                th class="num" { "id" } th { "partner" } th { "kind" } th { "detected (UTC)" }
                th { "proven" } th { "detail" }
            } }
            tbody {
                @for e in list {
                    tr data-evidence=(e.id) {
                        td class="num" { (e.id) }
                        td { (link(&format!("/explorer/partners/{}", url_component(&e.brand)), &e.brand)) }
                        td { (badge("bad", &e.kind)) }
                        (html::time_cell(e.detected_ms))
                        td { (yes_no(e.proven, ("bad", "proven"), ("warn", "as served"))) }
                        td {
                            (e.detail)
                            details {
                                summary { "signed notes (" (e.notes.len()) ")" }
                                @for n in &e.notes { pre { (n) } }
                            }
                        }
                    }
                }
            }
        }
    }
    .into()
}

/// `GET /explorer/partners`: every partner with its sync state, and the evidence.
pub(crate) async fn partners(State(app): AppState) -> Response {
    serve(app, |app, _ctx| {
        let list: Vec<PartnerStatus> = app
            .federation
            .partners()
            .iter()
            .map(|p| status(p))
            .collect();
        let evidence = evidence_of(app, None, PAGE_ROWS_MAX)?;
        let b = html! {
            h1 { "Partners" }
            p class="lead" {
                "Brands this node pins, and how far their logs are verified and mirrored here \
                 (spec/federation.md §3). Lag is the partner's latest checkpoint size minus the \
                 verified size."
            }
            @if list.is_empty() {
                p class="muted" id="partners" { "No partners." }
            } @else {
                table id="partners" {
                    thead { tr {
                        th { "brand" } th { "state" } th class="num" { "verified" }
                        th class="num" { "partner size" } th class="num" { "lag" }
                        th { "last sync (UTC)" } th class="num" { "cosigned our size" }
                        th class="num" { "evidence" } th { "last error" }
                    } }
                    tbody {
                        @for p in &list {
                            tr data-brand=(p.brand) data-verified-size=(p.verified_size)
                                data-partner-size=(p.partner_size) data-lag=(p.lag)
                                data-evidence=(p.evidence) data-frozen=(p.frozen)
                                data-pinned=(p.pinned) {
                                td {
                                    a class="partner-link" id={ "partner-link-" (p.brand) }
                                        href={ "/explorer/partners/" (url_component(p.brand.as_str())) } {
                                        (p.brand)
                                    }
                                }
                                td { (partner_state(p)) }
                                td class="num" { (int(p.verified_size)) }
                                td class="num" { (int(p.partner_size)) }
                                td class="num" { (int(p.lag)) }
                                @match p.last_sync_ms {
                                    Some(ms) => (html::time_cell(ms)),
                                    None => td class="muted" { "never" },
                                }
                                td class="num" { (int(p.cosigned_size)) }
                                td class="num" { (p.evidence) }
                                td { (p.last_error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
            h2 { "Evidence" }
            (evidence_table(&evidence))
        };
        Ok(Page {
            section: Section::Partners,
            name: "partners",
            title: "Partners".into(),
            body: b.into(),
        })
    })
    .await
}

fn partner_state(p: &PartnerStatus) -> Html {
    if p.frozen {
        badge("bad", "frozen")
    } else if !p.pinned {
        badge("warn", "unpinned")
    } else if p.lag == 0 && p.last_error.is_none() {
        badge("ok", "in sync")
    } else {
        badge("warn", "catching up")
    }
}

/// `GET /explorer/partners/{brand}`: one partner's sync state, mirror, agreements and evidence.
pub(crate) async fn partner(State(app): AppState, Path(brand): Path<String>) -> Response {
    serve(app, move |app, _ctx| {
        let brand: BrandId = path_param("brand id", &brand)?;
        let p = app
            .federation
            .partner(&brand)
            .ok_or_else(|| PageError::not_found(format!("{brand} is not a partner of this node")))?;
        let s = status(&p);
        let mirror_note = match &p.mirror_store {
            Some(m) => m
                .latest_checkpoint()
                .map_err(ApiError::internal)?
                .map(|(_, note)| note),
            None => None,
        };
        let agreements = agreements_with(&app.store, &app.federation.brand, &brand)?;
        let evidence = evidence_of(app, Some(&brand), PAGE_ROWS_MAX)?;
        let b = html! {
            h1 { "Partner " (s.brand) " " (partner_state(&s)) }
            p class="lead" { (s.url) }
            div class="cards" {
                (card(
                    "verified size",
                    html! { div class="value" data-verified-size=(s.verified_size) { (int(s.verified_size)) } },
                ))
                (card(
                    "partner size",
                    html! { div class="value" data-partner-size=(s.partner_size) { (int(s.partner_size)) } },
                ))
                (card("lag", html! { div class="value" data-lag=(s.lag) { (int(s.lag)) } }))
                (card(
                    "evidence",
                    html! { div class="value" data-evidence=(s.evidence) { (int(s.evidence)) } },
                ))
            }
            dl class="fields" id="partner" data-brand=(s.brand) data-pinned=(s.pinned)
                data-frozen=(s.frozen) {
                dt { "verifier key" } dd class="hash" { (s.verifier_key.as_deref().unwrap_or("not pinned")) }
                dt { "last sync" } dd { (last_sync(&s)) }
                dt { "last error" } dd { (s.last_error.as_deref().unwrap_or("none")) }
                dt { "our log size it cosigned" } dd { (int(s.cosigned_size)) }
            }
            h2 { "Agreements" }
            @if agreements.is_empty() {
                p class="muted" id="agreements" { "No agreement with this partner." }
            } @else {
                table id="agreements" {
                    thead { tr {
                        th { "agreement" } th { "directions" } th { "currency" }
                        th class="num" { "fee" } th class="num" { "credit limit" } th { "period" }
                        th class="num" { "statements" }
                    } }
                    tbody {
                        @for a in &agreements {
                            @let t = &a.agreement.terms;
                            @let c = &t.settlement_currency;
                            tr data-agreement=(t.agreement.as_str()) {
                                td class="mono" { (t.agreement.as_str()) }
                                td {
                                    (t.directions
                                        .iter()
                                        .map(|d| format!("{} → {}", d.payer, d.payee))
                                        .collect::<Vec<_>>()
                                        .join(", "))
                                }
                                td { (c.code()) }
                                td class="num" { (t.fee_bps) " bp" }
                                td class="num" {
                                    (html::money(
                                        i64::try_from(t.credit_limit_minor).unwrap_or(i64::MAX),
                                        c.minor_unit(),
                                        c.code()
                                    ))
                                }
                                td { (html::duration(t.period_ms.get())) }
                                td class="num" { (a.statements.len()) }
                            }
                        }
                    }
                }
            }
            p {
                a id="settlement-link" href={ "/explorer/settlement/" (url_component(brand.as_str())) } {
                    "Settlement with " (brand.as_str()) " →"
                }
            }
            h2 { "Latest verified checkpoint of " (brand.as_str()) }
            @match &mirror_note {
                Some(n) => pre id="mirror-note" { (n) },
                None => p class="muted" { "Nothing verified yet." },
            }
            h2 { "Evidence" }
            (evidence_table(&evidence))
        };
        Ok(Page {
            section: Section::Partners,
            name: "partner",
            title: format!("Partner {brand}"),
            body: b.into(),
        })
    })
    .await
}
