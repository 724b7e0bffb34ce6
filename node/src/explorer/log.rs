//! The overview, the log (newest first; by member in log order; by entry type) and the entry
//! page, each entry with its inclusion proof status.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde_json::Value;

use ledger::checkpoint::open_checkpoint;
use ledger::entry::{Entry, EntryKind, ENTRY_TYPES};
use ledger::types::MemberId;

use maud::html;

use super::html::{
    self, badge, card, card_value, int, link, pager, query, url_component, Html, Section,
};
use super::scan::{of_type, scan_back, scan_member};
use super::{
    load_row, path_param, serve, App, Ctx, Page, PageError, Params, Row, PAGE_ROWS_MAX, SCAN_MAX,
};
use crate::api::AppState;
use crate::federation::routes::cosigned_checkpoint;

/// Entries the overview lists.
const HOME_ROWS: usize = 10;
/// Deepest nesting of an entry body rendered as fields; deeper parts are shown as JSON.
const FIELDS_DEPTH_MAX: usize = 6;

/// The members an entry is about that are this brand's members (a quote's or obligation's
/// member belongs to the payer).
fn members_of<'a>(e: &'a Entry, ctx: &Ctx) -> Option<&'a MemberId> {
    match &e.kind {
        EntryKind::Quote(q) if q.payer == ctx.brand => Some(&q.member),
        EntryKind::Obligation(o) if o.quote.payer == ctx.brand => Some(&o.quote.member),
        k => k.member(),
    }
}

fn minor(amount: i64, c: &ledger::money::Currency) -> String {
    html::money(amount, c.minor_unit(), c.code())
}

/// One line saying what an entry does (text, not yet escaped).
pub(crate) fn summary(e: &Entry) -> String {
    use EntryKind as K;
    let pts = |p: u64| format!("{} pts", int(p));
    match &e.kind {
        K::Earn(b) => format!(
            "+{} to {}{}",
            pts(b.points.get()),
            b.member,
            if b.qualifying {
                ""
            } else {
                " (not qualifying)"
            }
        ),
        K::Redeem(b) => format!("−{} from {}", pts(b.points.get()), b.member),
        K::Adjust(b) => format!(
            "{} {} for {}: {}",
            match b.direction {
                ledger::entry::Direction::Credit => "credit",
                ledger::entry::Direction::Debit => "debit",
            },
            pts(b.points.get()),
            b.member,
            b.reason
        ),
        K::Expire(b) => format!(
            "{} of lot #{} of {} expired",
            pts(b.points.get()),
            b.lot.get(),
            b.member
        ),
        K::Hold(b) => format!(
            "{} of {} held until {}{}",
            pts(b.points.get()),
            b.member,
            html::time_s(b.expires_at.get()),
            b.payee
                .as_ref()
                .map_or(String::new(), |p| format!(" for {p}"))
        ),
        K::Post(b) => format!("hold {} posted", b.hold),
        K::Void(b) => format!("hold {} voided", b.hold),
        K::Refund(b) => format!("{} of {} refunded", pts(b.points.get()), b.redemption),
        K::TierPolicy(b) => format!(
            "tiers {}",
            b.tiers
                .iter()
                .map(|t| format!("{} ≥ {}", t.name, int(t.threshold)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        K::TierChange(b) => format!("{}: {} → {}", b.member, b.from, b.to),
        K::RateCard(b) => format!(
            "1 pt = {} {} from {}",
            b.point_value,
            b.currency,
            html::time_s(b.valid_from.get())
        ),
        K::ExpiryPolicy(b) => match b.lot_lifetime_ms {
            Some(d) => format!("points expire after {}", html::duration(d.get())),
            None => "points never expire".into(),
        },
        K::TierAttestation(b) => format!(
            "{} holds {}{}",
            b.member,
            b.tier,
            b.valid_until.map_or(String::new(), |u| format!(
                " until {}",
                html::time_s(u.get())
            ))
        ),
        K::FxRate(b) => format!("1 {} = {} {}", b.from, b.rate, b.to),
        K::SpendAuthorisation(b) => format!(
            "{} may spend up to {} at {} until {}",
            b.member,
            pts(b.max_points.get()),
            b.payee,
            html::time_s(b.expires_at.get())
        ),
        K::Agreement(a) => {
            let t = &a.terms;
            format!(
                "agreement {} between {} and {}, settled in {}",
                t.agreement, t.brands[0], t.brands[1], t.settlement_currency
            )
        }
        K::Quote(q) => format!(
            "{} of {} at {} = {} ({})",
            pts(q.points.get()),
            q.payer,
            q.payee,
            minor(q.amount_minor as i64, &q.currency),
            q.redemption
        ),
        K::Obligation(o) => format!(
            "{}: {} owes {} {} ({})",
            o.side,
            o.quote.payer,
            o.quote.payee,
            minor(o.quote.amount_minor as i64, &o.quote.currency),
            o.quote.redemption
        ),
        K::ObligationRefund(r) => format!(
            "{} refund {} of {}: {} back, {} minor units off",
            r.side,
            r.refund,
            r.redemption,
            pts(r.points.get()),
            int(r.amount_minor)
        ),
        K::Statement(s) => {
            let st = &s.statement;
            format!(
                "statement of {} to {}: {} owes {} {} net ({} lines)",
                html::time_s(st.period.from().get()),
                html::time_s(st.period.to().get()),
                st.net.payer,
                st.net.payee,
                minor(st.net.amount_minor as i64, &st.currency),
                st.lines
            )
        }
    }
}

/// A table of entries, each with its proof status; `id` names the table.
pub(crate) fn entries_table(id: &str, rows: &[Row], ctx: &Ctx) -> Html {
    if rows.is_empty() {
        return html! { p class="muted" id=(id) { "No entries." } }.into();
    }
    html! {
        table id=(id) {
            thead { tr {
                th class="num" { "#" } th { "time (UTC)" } th { "type" }
                th { "id" } th { "member" } th { "what" } th { "inclusion proof" }
            } }
            tbody {
                @for r in rows {
                    @let type_name = r.entry.as_ref().map_or("undecodable", |e| e.kind.type_name());
                    tr data-index=(r.index) data-type=(type_name) {
                        td class="num" {
                            a class="entry-link" href={ "/explorer/entries/" (r.index) } { (r.index) }
                        }
                        @match &r.entry {
                            Ok(e) => {
                                (html::time_cell(e.time.get()))
                                td { (badge("type", type_name)) }
                                td class="id" { (e.id.as_str()) }
                                td {
                                    @if let Some(m) = members_of(e, ctx) {
                                        a class="member-link"
                                            href={ "/explorer/members/" (url_component(m.as_str())) } {
                                            (m.as_str())
                                        }
                                    }
                                }
                                td { (summary(e)) }
                            }
                            Err(why) => {
                                td {}
                                td { (badge("type", type_name)) }
                                td class="id" {}
                                td {}
                                td { (why) }
                            }
                        }
                        td { (r.proof.badge()) }
                    }
                }
            }
        }
    }
    .into()
}

fn rows(app: &App, ctx: &Ctx, indexes: &[u64]) -> Result<Vec<Row>, PageError> {
    indexes.iter().map(|&i| load_row(app, ctx, i)).collect()
}

/// `GET /explorer`: the log's identity, latest checkpoints and the latest entries.
pub(crate) async fn home(State(app): AppState) -> Response {
    serve(app, |app, ctx| {
        let size = ctx.checkpoint.size;
        let scan = scan_back(&app.store, size, None, HOME_ROWS, SCAN_MAX, &of_type(None))?;
        let rows = rows(app, ctx, &scan.indexes)?;
        let cosigned = cosigned_checkpoint(app);
        let partners = app.federation.partners();
        let root = open_checkpoint(&ctx.checkpoint.note, &ctx.verifier)
            .map(|(c, _)| hex::encode(c.root))
            .unwrap_or_else(|e| format!("does not verify: {e}"));
        let b = html! {
            h1 { (app.config.brand.as_str()) }
            p class="lead" {
                "Public, read-only view of this brand's signed ledger: every entry below is shown \
                 with its inclusion proof, checked against the latest signed checkpoint."
            }
            div class="cards" {
                (card("entries", html! { div class="value" id="size" data-size=(size) { (int(size)) } }))
                (card(
                    "cosigned size",
                    html! {
                        div class="value" data-cosigned-size=(cosigned.size) { (int(cosigned.size)) }
                    },
                ))
                (card(
                    "cosigners",
                    card_value(&format!(
                        "{}{}",
                        int(cosigned.cosigners.len() as u64),
                        if cosigned.is_final { " (final)" } else { "" }
                    )),
                ))
                (card("partners", card_value(&int(partners.len() as u64))))
            }
            dl class="fields" {
                dt { "origin" } dd class="mono" { (app.config.origin) }
                dt { "verifier key" } dd class="hash" id="verifier-key" { (app.verifier_key) }
                dt { "root hash at size " (int(size)) } dd class="hash" { (root) }
            }
            h2 { "Latest entries" }
            (entries_table("entries", &rows, ctx))
            p { (link("/explorer/log", "The whole log →")) }
        };
        Ok(Page {
            section: Section::Home,
            name: "home",
            title: "Overview".into(),
            body: b.into(),
        })
    })
    .await
}

/// `GET /explorer/log?member=&type=&before=&after=`.
pub(crate) async fn log(
    State(app): AppState,
    q: Result<Query<std::collections::HashMap<String, String>>, QueryRejection>,
) -> Response {
    let params = Params::from_query(q);
    serve(app, move |app, ctx| {
        let p = params?;
        let member: Option<MemberId> = p.parse("member")?;
        let type_name: Option<&'static str> = match p.text("type") {
            None => None,
            Some(t) => Some(
                ENTRY_TYPES
                    .iter()
                    .copied()
                    .find(|x| *x == t)
                    .ok_or_else(|| PageError::bad_request(format!("type: no entry type {t:?}")))?,
            ),
        };
        let size = ctx.checkpoint.size;
        let want = of_type(type_name);
        let type_q = type_name.map(str::to_owned);
        let member_q = member.as_ref().map(|m| m.to_string());
        let (scan, order, nav) = match &member {
            Some(m) => {
                let after: Option<u64> = p.parse("after")?;
                let scan = scan_member(&app.store, size, m, after, PAGE_ROWS_MAX, SCAN_MAX, &want)?;
                let next = scan.next.map(|n| {
                    format!(
                        "/explorer/log{}",
                        query(&[
                            ("member", member_q.clone()),
                            ("type", type_q.clone()),
                            ("after", Some(n.to_string()))
                        ])
                    )
                });
                let first = after.is_some().then(|| {
                    format!(
                        "/explorer/log{}",
                        query(&[("member", member_q.clone()), ("type", type_q.clone())])
                    )
                });
                let nav = pager(&[("« first", first), ("next »", next)]);
                (scan, "in log order", nav)
            }
            None => {
                let before: Option<u64> = p.parse("before")?;
                let hi = before.unwrap_or(size).min(size);
                let scan = scan_back(&app.store, size, Some(hi), PAGE_ROWS_MAX, SCAN_MAX, &want)?;
                let newer = (hi < size).then(|| {
                    let b = (type_name.is_none() && hi + (PAGE_ROWS_MAX as u64) < size)
                        .then(|| (hi + PAGE_ROWS_MAX as u64).to_string());
                    format!(
                        "/explorer/log{}",
                        query(&[("type", type_q.clone()), ("before", b)])
                    )
                });
                let older = scan.next.map(|n| {
                    format!(
                        "/explorer/log{}",
                        query(&[("type", type_q.clone()), ("before", Some(n.to_string()))])
                    )
                });
                let nav = pager(&[("« newer", newer), ("older »", older)]);
                (scan, "newest first", nav)
            }
        };
        let rows = rows(app, ctx, &scan.indexes)?;
        let filter = match (&member, type_name) {
            (Some(m), Some(t)) => format!("The {t} entries of member {m}"),
            (Some(m), None) => format!("The entries of member {m}"),
            (None, Some(t)) => format!("The {t} entries"),
            (None, None) => "All entries".into(),
        };
        let body = html! {
            h1 { "Log" }
            p class="lead" id="filter" {
                (filter) ", " (order) "; " (int(size)) " entries under the latest signed checkpoint. \
                 Each entry's inclusion proof is computed against that checkpoint and verified here."
            }
            form class="filters" method="get" action="/explorer/log" {
                label {
                    "member"
                    input name="member" value=(member_q.as_deref().unwrap_or("")) placeholder="member id";
                }
                label {
                    "entry type"
                    select name="type" {
                        option value="" { "any type" }
                        @for t in ENTRY_TYPES {
                            option value=(t) selected[Some(*t) == type_name] { (t) }
                        }
                    }
                }
                button type="submit" { "Search" }
            }
            (nav)
            (entries_table("entries", &rows, ctx))
            (nav)
        };
        Ok(Page {
            section: Section::Log,
            name: "log",
            title: "Log".into(),
            body: body.into(),
        })
    })
    .await
}

/// An entry body as nested fields; times get a readable date next to them.
fn fields(v: &Value, key: &str, depth: usize) -> Html {
    match v {
        Value::Object(m) if depth < FIELDS_DEPTH_MAX => html! {
            dl class="fields" {
                @for (k, v) in m {
                    dt { (k) }
                    dd data-field=(k) { (fields(v, k, depth + 1)) }
                }
            }
        },
        Value::Array(a) if depth < FIELDS_DEPTH_MAX && a.iter().any(|x| x.is_object()) => html! {
            @for x in a { (fields(x, key, depth + 1)) }
        },
        Value::Number(n) => {
            let is_time = key == "time"
                || key.ends_with("_at")
                || key.starts_with("valid_")
                || matches!(key, "from" | "to" | "period_origin");
            match n.as_u64() {
                // Log times are ms since the epoch: anything after 2001 reads as a date.
                Some(t) if is_time && t > 1_000_000_000_000 => html! {
                    span class="mono" { (t) } " " span class="muted" { (html::time(t)) }
                },
                _ => html! { span class="mono" { (n) } },
            }
        }
        Value::String(s) if s.len() >= 40 => html! { span class="hash" { (s) } },
        Value::String(s) => html! { span class="mono" { (s) } },
        other => html! { span class="mono" { (other) } },
    }
    .into()
}

/// `GET /explorer/entries/{index}`: the decoded entry, its leaf hash and inclusion proof.
pub(crate) async fn entry(State(app): AppState, Path(index): Path<String>) -> Response {
    serve(app, move |app, ctx| {
        let index: u64 = path_param("log index", &index)?;
        let r = load_row(app, ctx, index)?;
        let type_name = r
            .entry
            .as_ref()
            .map_or("undecodable", |e| e.kind.type_name());
        let head = match &r.entry {
            Ok(e) => html! {
                dl class="fields" id="entry" data-index=(index) data-type=(type_name)
                    data-id=(e.id.as_str()) data-time=(e.time.get()) {
                    dt { "index" } dd { (index) }
                    dt { "id" } dd class="mono" { (e.id.as_str()) }
                    dt { "type" } dd { (badge("type", type_name)) }
                    dt { "time" }
                    dd {
                        span class="mono" { (e.time.get()) } " "
                        span class="muted" { (html::time(e.time.get())) }
                    }
                    @if let Some(m) = members_of(e, ctx) {
                        dt { "member" }
                        dd {
                            a id="member-link" class="member-link"
                                href={ "/explorer/members/" (url_component(m.as_str())) } {
                                (m.as_str())
                            }
                        }
                    }
                    dt { "what" } dd { (summary(e)) }
                }
                h2 { "Body" }
                (fields(&e.kind.body_value(), "body", 0))
            },
            Err(why) => html! {
                dl class="fields" id="entry" data-index=(index) {
                    dt { "index" } dd { (index) }
                    dt { "decoding" } dd { (badge("bad", why)) }
                }
            },
        };
        let root = match open_checkpoint(&ctx.checkpoint.note, &ctx.verifier) {
            Ok((c, _)) => hex::encode(c.root),
            Err(e) => format!("does not verify: {e}"),
        };
        let note = &ctx.checkpoint.note;
        let size = ctx.checkpoint.size;
        let prev = (index > 0).then(|| format!("/explorer/entries/{}", index - 1));
        let next = (index + 1 < size).then(|| format!("/explorer/entries/{}", index + 1));
        let proof = r.proof.badge();
        let leaf = hex::encode(r.leaf_hash);
        let body = html! {
            h1 { "Entry " (index) " " (badge("type", type_name)) }
            p class="lead" { (proof) }
            (pager(&[
                ("« previous", prev),
                ("next »", next),
                ("the log", Some("/explorer/log".into()))
            ]))
            (head)
            h2 { "Inclusion proof" }
            dl class="fields" id="inclusion" data-leaf-hash=(leaf) data-checkpoint-size=(size) {
                dt { "leaf hash" } dd class="hash" id="leaf-hash" { (leaf) }
                dt { "checkpoint size" } dd { (size) }
                dt { "root hash" } dd class="hash" { (root) }
                dt { "proof (" (r.proof_hashes.len()) " hashes)" }
                dd {
                    @if r.proof_hashes.is_empty() {
                        span class="muted" { "empty (the tree has one leaf)" }
                    } @else {
                        ol class="hash" id="proof-hashes" {
                            @for h in &r.proof_hashes { li { (h) } }
                        }
                    }
                }
                dt { "status" } dd { (proof) }
            }
            h2 { "Signed checkpoint" }
            pre id="checkpoint-note" { (note) }
            h2 { "Canonical bytes" }
            pre id="entry-bytes" { (r.text) }
        };
        Ok(Page {
            section: Section::Log,
            name: "entry",
            title: format!("Entry {index}"),
            body: body.into(),
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_render_as_escaped_fields_with_dates() {
        let v = serde_json::json!({
            "member": "<alice>",
            "expires_at": 1_795_435_509_007_u64,
            "points": 5,
            "nested": {"leaf_hash": "ab".repeat(32)}
        });
        let h = fields(&v, "body", 0);
        assert!(h.contains("&lt;alice&gt;"), "{h}");
        assert!(!h.contains("<alice>"));
        assert!(h.contains("2026-11-23 12:05:09.007 UTC"), "{h}");
        assert!(h.contains("<span class=\"mono\">5</span>"));
        assert!(h.contains("class=\"hash\""));
    }

    #[test]
    fn deep_bodies_stop_at_the_depth_limit() {
        let mut v = serde_json::json!(1);
        for _ in 0..20 {
            v = serde_json::json!({ "x": v });
        }
        let h = fields(&v, "body", 0);
        assert_eq!(h.matches("<dl").count(), FIELDS_DEPTH_MAX);
    }
}
