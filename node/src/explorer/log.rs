//! The overview, the log (newest first; by member in log order; by entry type) and the entry
//! page, each entry with its inclusion proof status.

use std::fmt::Write;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde_json::Value;

use ledger::checkpoint::open_checkpoint;
use ledger::entry::{Entry, EntryKind, ENTRY_TYPES};
use ledger::types::MemberId;

use super::html::{self, badge, card, escape, int, link, pager, query, url_component, Section};
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
pub(crate) fn entries_table(id: &str, rows: &[Row], ctx: &Ctx) -> String {
    if rows.is_empty() {
        return format!("<p class=\"muted\" id=\"{}\">No entries.</p>", escape(id));
    }
    let mut t = format!(
        "<table id=\"{}\"><thead><tr><th class=\"num\">#</th><th>time (UTC)</th><th>type</th>\
         <th>id</th><th>member</th><th>what</th><th>inclusion proof</th></tr></thead><tbody>",
        escape(id)
    );
    for r in rows {
        let href = format!("/explorer/entries/{}", r.index);
        let (time, type_name, entry_id, member, what) = match &r.entry {
            Ok(e) => (
                html::time_cell(e.time.get()),
                e.kind.type_name(),
                escape(e.id.as_str()),
                members_of(e, ctx).map_or(String::new(), |m| {
                    format!(
                        "<a class=\"member-link\" href=\"/explorer/members/{}\">{}</a>",
                        url_component(m.as_str()),
                        escape(m.as_str())
                    )
                }),
                escape(&summary(e)),
            ),
            Err(why) => (
                "<td></td>".to_string(),
                "undecodable",
                String::new(),
                String::new(),
                escape(why),
            ),
        };
        let _ = write!(
            t,
            "<tr data-index=\"{index}\" data-type=\"{type_name}\"><td class=\"num\">\
             <a class=\"entry-link\" href=\"{href}\">{index}</a></td>{time}\
             <td>{type_badge}</td><td class=\"id\">{entry_id}</td><td>{member}</td>\
             <td>{what}</td><td>{proof}</td></tr>",
            index = r.index,
            type_badge = badge("type", type_name),
            proof = r.proof.badge(),
        );
    }
    t.push_str("</tbody></table>");
    t
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
        let mut b = format!(
            "<h1>{brand}</h1><p class=\"lead\">Public, read-only view of this brand's signed \
             ledger: every entry below is shown with its inclusion proof, checked against the \
             latest signed checkpoint.</p><div class=\"cards\">{}{}{}{}</div>",
            card(
                "entries",
                &int(size),
                &format!(" id=\"size\" data-size=\"{size}\"")
            ),
            card(
                "cosigned size",
                &int(cosigned.size),
                &format!(" data-cosigned-size=\"{}\"", cosigned.size)
            ),
            card(
                "cosigners",
                &format!(
                    "{}{}",
                    int(cosigned.cosigners.len() as u64),
                    if cosigned.final_ { " (final)" } else { "" }
                ),
                ""
            ),
            card("partners", &int(partners.len() as u64), ""),
            brand = escape(app.config.brand.as_str()),
        );
        let _ = write!(
            b,
            "<dl class=\"fields\"><dt>origin</dt><dd class=\"mono\">{}</dd><dt>verifier key</dt>\
             <dd class=\"hash\" id=\"verifier-key\">{}</dd><dt>root hash at size {}</dt>\
             <dd class=\"hash\">{}</dd></dl><h2>Latest entries</h2>{}<p>{}</p>",
            escape(&app.config.origin),
            escape(&app.verifier_key),
            int(size),
            escape(&root),
            entries_table("entries", &rows, ctx),
            link("/explorer/log", "The whole log →"),
        );
        Ok(Page {
            section: Section::Home,
            name: "home",
            title: "Overview".into(),
            body: b,
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
        let mut options = String::from("<option value=\"\">any type</option>");
        for t in ENTRY_TYPES {
            let sel = if Some(*t) == type_name {
                " selected"
            } else {
                ""
            };
            let _ = write!(options, "<option value=\"{t}\"{sel}>{t}</option>");
        }
        let filter = match (&member, type_name) {
            (Some(m), Some(t)) => format!("The {t} entries of member {m}"),
            (Some(m), None) => format!("The entries of member {m}"),
            (None, Some(t)) => format!("The {t} entries"),
            (None, None) => "All entries".into(),
        };
        let body = format!(
            "<h1>Log</h1><p class=\"lead\" id=\"filter\">{filter}, {order}; {size} entries under \
             the latest signed checkpoint. Each entry's inclusion proof is computed against that \
             checkpoint and verified here.</p>\
             <form class=\"filters\" method=\"get\" action=\"/explorer/log\">\
             <label>member<input name=\"member\" value=\"{mv}\" placeholder=\"member id\"></label>\
             <label>entry type<select name=\"type\">{options}</select></label>\
             <button type=\"submit\">Search</button></form>{nav}{table}{nav}",
            filter = escape(&filter),
            size = int(size),
            mv = escape(member_q.as_deref().unwrap_or("")),
            table = entries_table("entries", &rows, ctx),
        );
        Ok(Page {
            section: Section::Log,
            name: "log",
            title: "Log".into(),
            body,
        })
    })
    .await
}

/// An entry body as nested fields (safe markup); times get a readable date next to them.
fn fields(v: &Value, key: &str, depth: usize) -> String {
    match v {
        Value::Object(m) if depth < FIELDS_DEPTH_MAX => {
            let mut out = String::from("<dl class=\"fields\">");
            for (k, v) in m {
                let _ = write!(
                    out,
                    "<dt>{}</dt><dd data-field=\"{}\">{}</dd>",
                    escape(k),
                    escape(k),
                    fields(v, k, depth + 1)
                );
            }
            out.push_str("</dl>");
            out
        }
        Value::Array(a) if depth < FIELDS_DEPTH_MAX && a.iter().any(|x| x.is_object()) => a
            .iter()
            .map(|x| fields(x, key, depth + 1))
            .collect::<Vec<_>>()
            .join(""),
        Value::Number(n) => {
            let is_time = key == "time"
                || key.ends_with("_at")
                || key.starts_with("valid_")
                || matches!(key, "from" | "to" | "period_origin");
            match n.as_u64() {
                // Log times are ms since the epoch: anything after 2001 reads as a date.
                Some(t) if is_time && t > 1_000_000_000_000 => format!(
                    "<span class=\"mono\">{t}</span> <span class=\"muted\">{}</span>",
                    html::time(t)
                ),
                _ => format!("<span class=\"mono\">{n}</span>"),
            }
        }
        Value::String(s) if s.len() >= 40 => format!("<span class=\"hash\">{}</span>", escape(s)),
        Value::String(s) => format!("<span class=\"mono\">{}</span>", escape(s)),
        other => format!("<span class=\"mono\">{}</span>", escape(&other.to_string())),
    }
}

/// `GET /explorer/entries/{index}`: the decoded entry, its leaf hash and inclusion proof.
pub(crate) async fn entry(State(app): AppState, Path(index): Path<String>) -> Response {
    serve(app, move |app, ctx| {
        let index: u64 = path_param("log index", &index)?;
        let r = load_row(app, ctx, index)?;
        let (type_name, head, decoded) = match &r.entry {
            Ok(e) => {
                let member = members_of(e, ctx).map_or(String::new(), |m| {
                    format!(
                        "<dt>member</dt><dd><a id=\"member-link\" class=\"member-link\" \
                         href=\"/explorer/members/{}\">{}</a></dd>",
                        url_component(m.as_str()),
                        escape(m.as_str())
                    )
                });
                (
                    e.kind.type_name(),
                    format!(
                        "<dl class=\"fields\" id=\"entry\" data-index=\"{index}\" data-type=\"{t}\" \
                         data-id=\"{id}\" data-time=\"{time}\"><dt>index</dt><dd>{index}</dd>\
                         <dt>id</dt><dd class=\"mono\">{id}</dd><dt>type</dt><dd>{tb}</dd>\
                         <dt>time</dt><dd><span class=\"mono\">{time}</span> \
                         <span class=\"muted\">{time_text}</span></dd>{member}\
                         <dt>what</dt><dd>{what}</dd></dl>",
                        t = e.kind.type_name(),
                        id = escape(e.id.as_str()),
                        tb = badge("type", e.kind.type_name()),
                        time = e.time.get(),
                        time_text = html::time(e.time.get()),
                        what = escape(&summary(e)),
                    ),
                    format!(
                        "<h2>Body</h2>{}",
                        fields(&e.kind.body_value(), "body", 0)
                    ),
                )
            }
            Err(why) => (
                "undecodable",
                format!(
                    "<dl class=\"fields\" id=\"entry\" data-index=\"{index}\"><dt>index</dt>\
                     <dd>{index}</dd><dt>decoding</dt><dd>{}</dd></dl>",
                    badge("bad", why)
                ),
                String::new(),
            ),
        };
        let (root, note) = match open_checkpoint(&ctx.checkpoint.note, &ctx.verifier) {
            Ok((c, _)) => (hex::encode(c.root), ctx.checkpoint.note.clone()),
            Err(e) => (format!("does not verify: {e}"), ctx.checkpoint.note.clone()),
        };
        let proof_list = if r.proof_hashes.is_empty() {
            "<span class=\"muted\">empty (the tree has one leaf)</span>".to_string()
        } else {
            let mut l = String::from("<ol class=\"hash\" id=\"proof-hashes\">");
            for h in &r.proof_hashes {
                let _ = write!(l, "<li>{}</li>", escape(h));
            }
            l.push_str("</ol>");
            l
        };
        let size = ctx.checkpoint.size;
        let prev = (index > 0).then(|| format!("/explorer/entries/{}", index - 1));
        let next = (index + 1 < size).then(|| format!("/explorer/entries/{}", index + 1));
        let body = format!(
            "<h1>Entry {index} {tb}</h1><p class=\"lead\">{proof}</p>{nav}{head}{decoded}\
             <h2>Inclusion proof</h2><dl class=\"fields\" id=\"inclusion\" \
             data-leaf-hash=\"{leaf}\" data-checkpoint-size=\"{size}\"><dt>leaf hash</dt>\
             <dd class=\"hash\" id=\"leaf-hash\">{leaf}</dd><dt>checkpoint size</dt><dd>{size}</dd>\
             <dt>root hash</dt><dd class=\"hash\">{root}</dd><dt>proof ({n} hashes)</dt>\
             <dd>{proof_list}</dd><dt>status</dt><dd>{proof}</dd></dl>\
             <h2>Signed checkpoint</h2><pre id=\"checkpoint-note\">{note}</pre>\
             <h2>Canonical bytes</h2><pre id=\"entry-bytes\">{bytes}</pre>",
            tb = badge("type", type_name),
            proof = r.proof.badge(),
            nav = pager(&[
                ("« previous", prev),
                ("next »", next),
                ("the log", Some("/explorer/log".into()))
            ]),
            leaf = hex::encode(r.leaf_hash),
            size = size,
            root = escape(&root),
            n = r.proof_hashes.len(),
            note = escape(&note),
            bytes = escape(&r.text),
        );
        Ok(Page {
            section: Section::Log,
            name: "entry",
            title: format!("Entry {index}"),
            body,
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
