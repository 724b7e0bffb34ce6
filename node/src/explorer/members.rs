//! Members (balance, lots, tier, history) and open holds.

use std::collections::HashMap;
use std::fmt::Write;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;

use ledger::state::read::Record;
use ledger::state::{record_prefix, HoldState, MemberState, Policies};
use ledger::store::Store;
use ledger::types::{EntryId, MemberId};

use super::html::{self, badge, card, escape, int, pager, query, url_component, Section};
use super::log::entries_table;
use super::scan::{of_type, scan_member};
use super::{load_row, path_param, serve, Page, PageError, Params, PAGE_ROWS_MAX, SCAN_MAX};
use crate::api::AppState;
use crate::problem::ApiError;
use crate::reads::{hold_view, member_view, member_view_of};
use crate::sequencer::now;

/// State records whose key starts with `prefix`, from the one after name `after` (or the
/// first), at most `limit`, as (name, value).
pub(crate) fn records_after(
    store: &Store,
    prefix: &[u8],
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, Vec<u8>)>, PageError> {
    let from = match after {
        // The smallest key above `prefix + after`.
        Some(a) => [prefix, a.as_bytes(), &[0]].concat(),
        None => prefix.to_vec(),
    };
    store
        .state_scan_from(prefix, &from, limit)
        .map_err(ApiError::internal)?
        .into_iter()
        .map(|(k, v)| {
            let name = String::from_utf8(k[prefix.len()..].to_vec())
                .map_err(|_| ApiError::internal("a state record key is not UTF-8"))?;
            Ok((name, v))
        })
        .collect()
}

fn member_link(m: &str) -> String {
    format!(
        "<a class=\"member-link\" href=\"/explorer/members/{}\">{}</a>",
        url_component(m),
        escape(m)
    )
}

/// `GET /explorer/members?member=&after=`: every member by id (or go to one).
pub(crate) async fn members(
    State(app): AppState,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let params = Params::from_query(q);
    serve(app, move |app, _ctx| {
        let p = params?;
        if let Some(m) = p.parse::<MemberId>("member")? {
            // The search box: show that member's page here.
            return member_page(app, _ctx, &m, None);
        }
        let after: Option<MemberId> = p.parse("after")?;
        let records = records_after(
            &app.store,
            record_prefix::MEMBER,
            after.as_ref().map(|a| a.as_str()),
            PAGE_ROWS_MAX,
        )?;
        let policies: Policies =
            ledger::state::read::policies(&app.store).map_err(ApiError::internal)?;
        let t = now();
        let mut b = String::from(
            "<h1>Members</h1><p class=\"lead\">Members by pseudonymous id, with their points \
             and tier. Nothing else about a member is kept in the log.</p>\
             <form class=\"filters\" method=\"get\" action=\"/explorer/members\">\
             <label>member<input name=\"member\" placeholder=\"member id\"></label>\
             <button type=\"submit\">Open</button></form>",
        );
        let next = (records.len() == PAGE_ROWS_MAX).then(|| {
            format!(
                "/explorer/members{}",
                query(&[("after", records.last().map(|(n, _)| n.clone()))])
            )
        });
        let first = after.as_ref().map(|_| "/explorer/members".to_string());
        let nav = pager(&[("« first", first), ("next »", next)]);
        b.push_str(&nav);
        b.push_str(
            "<table id=\"members\"><thead><tr><th>member</th><th class=\"num\">balance</th>\
             <th class=\"num\">available</th><th class=\"num\">pending</th><th>tier</th>\
             <th class=\"num\">lots</th></tr></thead><tbody>",
        );
        for (name, v) in &records {
            let id: MemberId = name.parse().map_err(ApiError::internal)?;
            let m = <MemberState as Record>::decode(v).map_err(ApiError::internal)?;
            let view = member_view_of(&app.store, &id, m, &policies, t)?;
            let _ = write!(
                b,
                "<tr data-member=\"{m}\" data-balance=\"{bal}\"><td>{link}</td>\
                 <td class=\"num\">{bal_text}</td><td class=\"num\">{avail}</td>\
                 <td class=\"num\">{pend}</td><td>{tier}</td><td class=\"num\">{lots}</td></tr>",
                m = escape(&view.member),
                bal = view.balance,
                link = member_link(&view.member),
                bal_text = int(view.balance),
                avail = int(view.available),
                pend = int(view.pending),
                tier = escape(view.tier.as_deref().unwrap_or("—")),
                lots = view.lots_total,
            );
        }
        b.push_str("</tbody></table>");
        b.push_str(&nav);
        Ok(Page {
            section: Section::Members,
            name: "members",
            title: "Members".into(),
            body: b,
        })
    })
    .await
}

/// `GET /explorer/members/{member}?after=`: balance, lots, tier and history.
pub(crate) async fn member(
    State(app): AppState,
    Path(member): Path<String>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let params = Params::from_query(q);
    serve(app, move |app, ctx| {
        let p = params?;
        let id: MemberId = path_param("member id", &member)?;
        let after: Option<u64> = p.parse("after")?;
        member_page(app, ctx, &id, after)
    })
    .await
}

fn member_page(
    app: &crate::api::App,
    ctx: &super::Ctx,
    id: &MemberId,
    after: Option<u64>,
) -> Result<Page, PageError> {
    let view = member_view(&app.store, id)?
        .ok_or_else(|| PageError::not_found(format!("member {id} has no points at this brand")))?;
    let size = ctx.checkpoint.size;
    let scan = scan_member(
        &app.store,
        size,
        id,
        after,
        PAGE_ROWS_MAX,
        SCAN_MAX,
        &of_type(None),
    )?;
    let rows: Vec<_> = scan
        .indexes
        .iter()
        .map(|&i| load_row(app, ctx, i))
        .collect::<Result<_, _>>()?;
    let tier_text = match (&view.tier, view.tier_valid_until) {
        (Some(t), Some(u)) => format!("{t} until {}", html::time(u)),
        (Some(t), None) => t.clone(),
        (None, _) => "no tier policy".into(),
    };
    let mut b = format!(
        "<h1>Member <span class=\"mono\">{name}</span></h1><p class=\"lead\">Points in lots, \
         spendable now and held; lots are consumed soonest-expiring first.</p>\
         <div class=\"cards\" id=\"member\" data-member=\"{name}\" data-balance=\"{bal}\" \
         data-available=\"{avail}\" data-pending=\"{pend}\" data-tier=\"{tier}\">{}{}{}{}</div>",
        card("balance", &int(view.balance), " id=\"balance\""),
        card("available", &int(view.available), " id=\"available\""),
        card("pending in holds", &int(view.pending), " id=\"pending\""),
        card("tier", &tier_text, " id=\"tier\""),
        name = escape(&view.member),
        bal = view.balance,
        avail = view.available,
        pend = view.pending,
        tier = escape(view.tier.as_deref().unwrap_or("")),
    );
    b.push_str("<h2>Lots</h2>");
    if view.lots.is_empty() {
        b.push_str("<p class=\"muted\" id=\"lots\">No lots.</p>");
    } else {
        b.push_str(
            "<table id=\"lots\" class=\"compact\"><thead><tr><th class=\"num\">created by entry</th>\
             <th class=\"num\">remaining</th><th>expires</th></tr></thead><tbody>",
        );
        let t = now().get();
        for l in &view.lots {
            let expires = match l.expires_at {
                None => "never".to_string(),
                Some(e) if e <= t => format!("{} {}", html::time(e), badge("warn", "past expiry")),
                Some(e) => html::time(e),
            };
            let _ = write!(
                b,
                "<tr data-lot=\"{lot}\" data-remaining=\"{rem}\"><td class=\"num\">\
                 <a href=\"/explorer/entries/{lot}\">{lot}</a></td><td class=\"num\">{rem_text}</td>\
                 <td>{expires}</td></tr>",
                lot = l.lot,
                rem = l.remaining,
                rem_text = int(l.remaining),
            );
        }
        b.push_str("</tbody></table>");
    }
    let name = id.to_string();
    let next = scan.next.map(|n| {
        format!(
            "/explorer/members/{}{}",
            url_component(&name),
            query(&[("after", Some(n.to_string()))])
        )
    });
    let first = after.map(|_| format!("/explorer/members/{}", url_component(&name)));
    let nav = pager(&[
        ("« first", first),
        ("next »", next),
        (
            "search the log",
            Some(format!(
                "/explorer/log{}",
                query(&[("member", Some(name.clone()))])
            )),
        ),
    ]);
    let _ = write!(
        b,
        "<h2>History</h2><p class=\"muted\">The member's entries in log order.</p>{nav}{}{nav}",
        entries_table("history", &rows, ctx)
    );
    Ok(Page {
        section: Section::Members,
        name: "member",
        title: format!("Member {id}"),
        body: b,
    })
}

/// `GET /explorer/holds?after=`: open holds by id.
pub(crate) async fn holds(
    State(app): AppState,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let params = Params::from_query(q);
    serve(app, move |app, _ctx| {
        let p = params?;
        let after: Option<EntryId> = p.parse("after")?;
        let t = now().get();
        let mut open = Vec::new();
        let mut cursor = after.as_ref().map(|a| a.to_string());
        let mut examined = 0;
        let mut more = true;
        'scan: while examined < SCAN_MAX {
            let batch = records_after(
                &app.store,
                record_prefix::HOLD,
                cursor.as_deref(),
                PAGE_ROWS_MAX.min(SCAN_MAX - examined),
            )?;
            let asked = PAGE_ROWS_MAX.min(SCAN_MAX - examined);
            for (name, v) in &batch {
                examined += 1;
                cursor = Some(name.clone());
                let h = <HoldState as Record>::decode(v).map_err(ApiError::internal)?;
                let view = hold_view(name, &h);
                if view.status == "open" {
                    open.push((view, h.authorisation));
                    if open.len() == PAGE_ROWS_MAX {
                        break 'scan;
                    }
                }
            }
            if batch.len() < asked {
                more = false;
                break;
            }
        }
        let next = more.then(|| {
            format!(
                "/explorer/holds{}",
                query(&[("after", cursor.clone())])
            )
        });
        let first = after.as_ref().map(|_| "/explorer/holds".to_string());
        let nav = pager(&[("« first", first), ("next »", next)]);
        let held: u64 = open.iter().map(|(h, _)| h.points).sum();
        let mut b = format!(
            "<h1>Open holds</h1><p class=\"lead\">Points held for a later post or void, by hold \
             id. A hold past its expiry is released by the node.</p><div class=\"cards\">{}{}</div>{nav}",
            card(
                "open holds on this page",
                &int(open.len() as u64),
                &format!(" data-open=\"{}\"", open.len())
            ),
            card("points held", &int(held), &format!(" data-held=\"{held}\"")),
        );
        if open.is_empty() {
            b.push_str("<p class=\"muted\" id=\"holds\">No open holds.</p>");
        } else {
            b.push_str(
                "<table id=\"holds\"><thead><tr><th>hold</th><th class=\"num\">entry</th>\
                 <th>member</th><th class=\"num\">points</th><th>expires (UTC)</th><th>payee</th>\
                 <th>authorisation</th></tr></thead><tbody>",
            );
            for (h, auth) in &open {
                let expires = if h.expires_at <= t {
                    format!("{} {}", html::time(h.expires_at), badge("warn", "expired"))
                } else {
                    html::time(h.expires_at)
                };
                let _ = write!(
                    b,
                    "<tr data-hold=\"{id}\" data-points=\"{pts}\" data-member=\"{m}\">\
                     <td class=\"mono\">{id}</td><td class=\"num\"><a href=\"/explorer/entries/{i}\">{i}</a></td>\
                     <td>{mlink}</td><td class=\"num\">{pts_text}</td><td>{expires}</td>\
                     <td>{payee}</td><td class=\"mono\">{auth}</td></tr>",
                    id = escape(&h.id),
                    pts = h.points,
                    m = escape(&h.member),
                    i = h.index,
                    mlink = member_link(&h.member),
                    pts_text = int(h.points),
                    payee = h.payee.as_deref().map_or("—".into(), |p| {
                        format!(
                            "<a href=\"/explorer/partners/{}\">{}</a>",
                            url_component(p),
                            escape(p)
                        )
                    }),
                    auth = escape(auth.as_ref().map_or("—", |a| a.as_str())),
                );
            }
            b.push_str("</tbody></table>");
        }
        b.push_str(&nav);
        Ok(Page {
            section: Section::Holds,
            name: "holds",
            title: "Open holds".into(),
            body: b,
        })
    })
    .await
}
