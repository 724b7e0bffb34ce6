//! Checkpoints with their cosignatures, and partners with sync lag and evidence.

use std::collections::HashMap;
use std::fmt::Write;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;

use ledger::checkpoint::open_checkpoint;
use ledger::types::BrandId;

use super::html::{self, badge, card, escape, int, link, pager, query, url_component, Section};
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
        let mut b = format!(
            "<h1>Checkpoints</h1><p class=\"lead\">Every checkpoint this node signed, by tree \
             size, and the cosignatures its partners' witnesses returned (spec/federation.md \
             §4). {finality}</p><div class=\"cards\">{}{}{}</div>",
            card(
                "latest signed size",
                &int(ctx.checkpoint.size),
                &format!(" data-latest-size=\"{}\"", ctx.checkpoint.size)
            ),
            card(
                "cosigned size",
                &int(cosigned.size),
                &format!(
                    " id=\"cosigned-size\" data-cosigned-size=\"{}\"",
                    cosigned.size
                )
            ),
            card(
                "cosigners",
                &format!(
                    "{}{}",
                    cosigned.cosigners.len(),
                    if cosigned.final_ {
                        " · final"
                    } else {
                        " · not final"
                    }
                ),
                &format!(
                    " id=\"cosigners\" data-cosigners=\"{}\" data-final=\"{}\"",
                    escape(&cosigned.cosigners.join(",")),
                    cosigned.final_
                )
            ),
            finality = escape(&finality),
        );
        let _ = write!(
            b,
            "<h2>Latest cosigned checkpoint</h2><pre id=\"cosigned-note\">{}</pre>\
             <h2>Signed checkpoints</h2>",
            escape(&cosigned.note)
        );
        let next = page.next_cursor.as_ref().map(|c| {
            format!(
                "/explorer/checkpoints{}",
                query(&[("after", Some(c.clone()))])
            )
        });
        let first = after.map(|_| "/explorer/checkpoints".to_string());
        let nav = pager(&[("« first", first), ("next »", next)]);
        b.push_str(&nav);
        b.push_str(
            "<table id=\"checkpoints\"><thead><tr><th class=\"num\">size</th><th>root hash</th>\
             <th>signature</th><th>cosigned by</th></tr></thead><tbody>",
        );
        for c in &page.checkpoints {
            let (root, sig) = match open_checkpoint(&c.note, &ctx.verifier) {
                Ok((cp, _)) => (hex::encode(cp.root), badge("ok", "valid")),
                Err(e) => (String::new(), badge("bad", &e.to_string())),
            };
            let cosigners = witness::cosigned_at(app.federation.store(), c.size)
                .map_err(ApiError::internal)?
                .map(|w| w.cosigners)
                .unwrap_or_default();
            let _ = write!(
                b,
                "<tr data-size=\"{size}\" data-cosigners=\"{n}\"><td class=\"num\">{size_text}</td>\
                 <td class=\"hash\">{root}</td><td>{sig}</td><td>{names}</td></tr>",
                size = c.size,
                size_text = int(c.size),
                n = cosigners.len(),
                names = if cosigners.is_empty() {
                    "<span class=\"muted\">—</span>".to_string()
                } else {
                    escape(&cosigners.join(", "))
                },
            );
        }
        b.push_str("</tbody></table>");
        b.push_str(&nav);
        Ok(Page {
            section: Section::Checkpoints,
            name: "checkpoints",
            title: "Checkpoints".into(),
            body: b,
        })
    })
    .await
}

fn yes_no(v: bool, yes: (&str, &str), no: (&str, &str)) -> String {
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

fn evidence_table(list: &[Evidence]) -> String {
    if list.is_empty() {
        return "<p class=\"muted\" id=\"evidence\" data-count=\"0\">No evidence: no partner \
                served anything contradicting what it signed.</p>"
            .into();
    }
    let mut t = format!(
        "<table id=\"evidence\" data-count=\"{}\"><thead><tr><th class=\"num\">id</th>\
         <th>partner</th><th>kind</th><th>detected (UTC)</th><th>proven</th><th>detail</th></tr>\
         </thead><tbody>",
        list.len()
    );
    for e in list {
        let notes: String = e
            .notes
            .iter()
            .map(|n| format!("<pre>{}</pre>", escape(n)))
            .collect();
        let _ = write!(
            t,
            "<tr data-evidence=\"{id}\"><td class=\"num\">{id}</td><td>{brand}</td><td>{kind}</td>\
             {time}<td>{proven}</td><td>{detail}<details><summary>signed notes \
             ({n})</summary>{notes}</details></td></tr>",
            id = e.id,
            brand = link(
                &format!("/explorer/partners/{}", url_component(&e.brand)),
                &e.brand
            ),
            kind = badge("bad", &e.kind),
            time = html::time_cell(e.detected_ms),
            proven = yes_no(e.proven, ("bad", "proven"), ("warn", "as served")),
            detail = escape(&e.detail),
            n = e.notes.len(),
        );
    }
    t.push_str("</tbody></table>");
    t
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
        let mut b = String::from(
            "<h1>Partners</h1><p class=\"lead\">Brands this node pins, and how far their logs \
             are verified and mirrored here (spec/federation.md §3). Lag is the partner's \
             latest checkpoint size minus the verified size.</p>",
        );
        if list.is_empty() {
            b.push_str("<p class=\"muted\" id=\"partners\">No partners.</p>");
        } else {
            b.push_str(
                "<table id=\"partners\"><thead><tr><th>brand</th><th>state</th>\
                 <th class=\"num\">verified</th><th class=\"num\">partner size</th>\
                 <th class=\"num\">lag</th><th>last sync (UTC)</th><th class=\"num\">cosigned our \
                 size</th><th class=\"num\">evidence</th><th>last error</th></tr></thead><tbody>",
            );
            for p in &list {
                let _ = write!(
                    b,
                    "<tr data-brand=\"{brand}\" data-verified-size=\"{v}\" data-partner-size=\"{ps}\" \
                     data-lag=\"{lag}\" data-evidence=\"{ev}\" data-frozen=\"{frozen}\" \
                     data-pinned=\"{pinned}\"><td><a class=\"partner-link\" id=\"partner-link-{brand}\" \
                     href=\"/explorer/partners/{brand_url}\">{brand}</a></td><td>{state}</td>\
                     <td class=\"num\">{v_text}</td><td class=\"num\">{ps_text}</td>\
                     <td class=\"num\">{lag_text}</td>{sync}\
                     <td class=\"num\">{cs}</td><td class=\"num\">{ev}</td><td>{err}</td></tr>",
                    brand = escape(&p.brand),
                    brand_url = url_component(&p.brand),
                    v = p.verified_size,
                    ps = p.partner_size,
                    lag = p.lag,
                    ev = p.evidence,
                    frozen = p.frozen,
                    pinned = p.pinned,
                    state = partner_state(p),
                    v_text = int(p.verified_size),
                    ps_text = int(p.partner_size),
                    lag_text = int(p.lag),
                    sync = p
                        .last_sync_ms
                        .map_or_else(|| "<td class=\"muted\">never</td>".into(), html::time_cell),
                    cs = int(p.cosigned_size),
                    err = escape(p.last_error.as_deref().unwrap_or("")),
                );
            }
            b.push_str("</tbody></table>");
        }
        let evidence = evidence_of(app, None, PAGE_ROWS_MAX)?;
        let _ = write!(b, "<h2>Evidence</h2>{}", evidence_table(&evidence));
        Ok(Page {
            section: Section::Partners,
            name: "partners",
            title: "Partners".into(),
            body: b,
        })
    })
    .await
}

fn partner_state(p: &PartnerStatus) -> String {
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
        let mut b = format!(
            "<h1>Partner {name} {state}</h1><p class=\"lead\">{url}</p>\
             <div class=\"cards\">{}{}{}{}</div>",
            card(
                "verified size",
                &int(s.verified_size),
                &format!(" data-verified-size=\"{}\"", s.verified_size)
            ),
            card(
                "partner size",
                &int(s.partner_size),
                &format!(" data-partner-size=\"{}\"", s.partner_size)
            ),
            card("lag", &int(s.lag), &format!(" data-lag=\"{}\"", s.lag)),
            card(
                "evidence",
                &int(s.evidence),
                &format!(" data-evidence=\"{}\"", s.evidence)
            ),
            name = escape(&s.brand),
            state = partner_state(&s),
            url = escape(&s.url),
        );
        let _ = write!(
            b,
            "<dl class=\"fields\" id=\"partner\" data-brand=\"{brand}\" data-pinned=\"{pinned}\" \
             data-frozen=\"{frozen}\"><dt>verifier key</dt><dd class=\"hash\">{key}</dd>\
             <dt>last sync</dt><dd>{sync}</dd><dt>last error</dt><dd>{err}</dd>\
             <dt>our log size it cosigned</dt><dd>{cs}</dd></dl>",
            brand = escape(&s.brand),
            pinned = s.pinned,
            frozen = s.frozen,
            key = escape(s.verifier_key.as_deref().unwrap_or("not pinned")),
            sync = last_sync(&s),
            err = escape(s.last_error.as_deref().unwrap_or("none")),
            cs = int(s.cosigned_size),
        );
        b.push_str("<h2>Agreements</h2>");
        if agreements.is_empty() {
            b.push_str("<p class=\"muted\" id=\"agreements\">No agreement with this partner.</p>");
        } else {
            b.push_str(
                "<table id=\"agreements\"><thead><tr><th>agreement</th><th>directions</th>\
                 <th>currency</th><th class=\"num\">fee</th><th class=\"num\">credit limit</th>\
                 <th>period</th><th class=\"num\">statements</th></tr></thead><tbody>",
            );
            for a in &agreements {
                let t = &a.agreement.terms;
                let c = &t.settlement_currency;
                let _ = write!(
                    b,
                    "<tr data-agreement=\"{id}\"><td class=\"mono\">{id}</td><td>{dirs}</td>\
                     <td>{c}</td><td class=\"num\">{fee} bp</td><td class=\"num\">{limit}</td>\
                     <td>{period}</td><td class=\"num\">{n}</td></tr>",
                    id = escape(t.agreement.as_str()),
                    dirs = escape(
                        &t.directions
                            .iter()
                            .map(|d| format!("{} → {}", d.payer, d.payee))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    c = escape(c.code()),
                    fee = t.fee_bps,
                    limit = html::money(
                        i64::try_from(t.credit_limit_minor).unwrap_or(i64::MAX),
                        c.minor_unit(),
                        c.code()
                    ),
                    period = html::duration(t.period_ms.get()),
                    n = a.statements.len(),
                );
            }
            b.push_str("</tbody></table>");
        }
        let _ = write!(
            b,
            "<p><a id=\"settlement-link\" href=\"/explorer/settlement/{}\">Settlement with {} →</a></p>",
            url_component(brand.as_str()),
            escape(brand.as_str())
        );
        let _ = write!(
            b,
            "<h2>Latest verified checkpoint of {}</h2>{}",
            escape(brand.as_str()),
            match mirror_note {
                Some(n) => format!("<pre id=\"mirror-note\">{}</pre>", escape(&n)),
                None => "<p class=\"muted\">Nothing verified yet.</p>".into(),
            }
        );
        let evidence = evidence_of(app, Some(&brand), PAGE_ROWS_MAX)?;
        let _ = write!(b, "<h2>Evidence</h2>{}", evidence_table(&evidence));
        Ok(Page {
            section: Section::Partners,
            name: "partner",
            title: format!("Partner {brand}"),
            body: b,
        })
    })
    .await
}
