//! Members (balance, lots, tier, history) and open holds.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;

use ledger::state::read::Record;
use ledger::state::{record_prefix, HoldState, MemberState, Policies};
use ledger::types::{EntryId, MemberId};
use ledger_store::store::Store;

use maud::html;

use super::html::{self, badge, card, int, pager, query, url_component, Html, Section};
use super::log::entries_table;
use super::scan::{of_type, scan_member};
use super::{load_row, path_param, serve, Page, PageError, Params, PAGE_ROWS_MAX, SCAN_MAX};
use crate::api::AppState;
use crate::problem::ApiError;
use crate::reads::{hold_view, member_view, member_view_of};
use crate::sequencer::now;
use crate::views::HoldStatusKind;

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

fn member_link(m: &str) -> Html {
    html! { a class="member-link" href={ "/explorer/members/" (url_component(m)) } { (m) } }.into()
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
        let next = (records.len() == PAGE_ROWS_MAX).then(|| {
            format!(
                "/explorer/members{}",
                query(&[("after", records.last().map(|(n, _)| n.clone()))])
            )
        });
        let first = after.as_ref().map(|_| "/explorer/members".to_string());
        let nav = pager(&[("« first", first), ("next »", next)]);
        let mut views = Vec::with_capacity(records.len());
        for (name, v) in &records {
            let id: MemberId = name.parse().map_err(ApiError::internal)?;
            let m = <MemberState as Record>::decode(v).map_err(ApiError::internal)?;
            views.push(member_view_of(&app.store, &id, m, &policies, t)?);
        }
        let b = html! {
            h1 { "Members" }
            p class="lead" {
                "Members by pseudonymous id, with their points and tier. Nothing else about a \
                 member is kept in the log."
            }
            form class="filters" method="get" action="/explorer/members" {
                label { "member" input name="member" placeholder="member id"; }
                button type="submit" { "Open" }
            }
            (nav)
            table id="members" {
                thead { tr {
                    th { "member" } th class="num" { "balance" } th class="num" { "available" }
                    th class="num" { "pending" } th { "tier" } th class="num" { "lots" }
                } }
                tbody {
                    @for view in &views {
                        tr data-member=(view.member) data-balance=(view.balance) {
                            td { (member_link(view.member.as_str())) }
                            td class="num" { (int(view.balance)) }
                            td class="num" { (int(view.available)) }
                            td class="num" { (int(view.pending)) }
                            td { (view.tier.as_ref().map(|t| t.as_str()).unwrap_or("—")) }
                            td class="num" { (view.lots_total) }
                        }
                    }
                }
            }
            (nav)
        };
        Ok(Page {
            section: Section::Members,
            name: "members",
            title: "Members".into(),
            body: b.into(),
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
        (Some(t), Some(u)) => format!("{t} until {}", html::time(u.get())),
        (Some(t), None) => t.to_string(),
        (None, _) => "no tier policy".into(),
    };
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
    let t = now().get();
    let b = html! {
        h1 { "Member " span class="mono" { (view.member) } }
        p class="lead" {
            "Points in lots, spendable now and held; lots are consumed soonest-expiring first."
        }
        div class="cards" id="member" data-member=(view.member) data-balance=(view.balance)
            data-available=(view.available) data-pending=(view.pending)
            data-tier=(view.tier.as_ref().map(|t| t.as_str()).unwrap_or("")) {
            (card("balance", html! { div class="value" id="balance" { (int(view.balance)) } }))
            (card("available", html! { div class="value" id="available" { (int(view.available)) } }))
            (card("pending in holds", html! { div class="value" id="pending" { (int(view.pending)) } }))
            (card("tier", html! { div class="value" id="tier" { (tier_text) } }))
        }
        h2 { "Lots" }
        @if view.lots.is_empty() {
            p class="muted" id="lots" { "No lots." }
        } @else {
            table id="lots" class="compact" {
                thead { tr {
                    th class="num" { "created by entry" } th class="num" { "remaining" }
                    th { "expires" }
                } }
                tbody {
                    @for l in &view.lots {
                        tr data-lot=(l.lot) data-remaining=(l.remaining) {
                            td class="num" { a href={ "/explorer/entries/" (l.lot) } { (l.lot) } }
                            td class="num" { (int(l.remaining)) }
                            td {
                                @match l.expires_at {
                                    None => "never",
                                    Some(e) if e.get() <= t => {
                                        (html::time(e.get())) " " (badge("warn", "past expiry"))
                                    }
                                    Some(e) => (html::time(e.get())),
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "History" }
        p class="muted" { "The member's entries in log order." }
        (nav)
        (entries_table("history", &rows, ctx))
        (nav)
    };
    Ok(Page {
        section: Section::Members,
        name: "member",
        title: format!("Member {id}"),
        body: b.into(),
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
                let view = hold_view(&name.parse().map_err(ApiError::internal)?, &h);
                if view.status == HoldStatusKind::Open {
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
        let b = html! {
            h1 { "Open holds" }
            p class="lead" {
                "Points held for a later post or void, by hold id. A hold past its expiry is \
                 released by the node."
            }
            div class="cards" {
                (card(
                    "open holds on this page",
                    html! { div class="value" data-open=(open.len()) { (int(open.len() as u64)) } },
                ))
                (card("points held", html! { div class="value" data-held=(held) { (int(held)) } }))
            }
            (nav)
            @if open.is_empty() {
                p class="muted" id="holds" { "No open holds." }
            } @else {
                table id="holds" {
                    thead { tr {
                        th { "hold" } th class="num" { "entry" } th { "member" }
                        th class="num" { "points" } th { "expires (UTC)" } th { "payee" }
                        th { "authorisation" }
                    } }
                    tbody {
                        @for (h, auth) in &open {
                            tr data-hold=(h.id) data-points=(h.points) data-member=(h.member) {
                                td class="mono" { (h.id) }
                                td class="num" { a href={ "/explorer/entries/" (h.index) } { (h.index) } }
                                td { (member_link(h.member.as_str())) }
                                td class="num" { (int(h.points)) }
                                td {
                                    (html::time(h.expires_at.get()))
                                    @if h.expires_at.get() <= t { " " (badge("warn", "expired")) }
                                }
                                td {
                                    @match h.payee.as_ref().map(|p| p.as_str()) {
                                        Some(p) => {
                                            a href={ "/explorer/partners/" (url_component(p)) } { (p) }
                                        }
                                        None => "—",
                                    }
                                }
                                td class="mono" { (auth.as_ref().map_or("—", |a| a.as_str())) }
                            }
                        }
                    }
                }
            }
            (nav)
        };
        Ok(Page {
            section: Section::Holds,
            name: "holds",
            title: "Open holds".into(),
            body: b.into(),
        })
    })
    .await
}
