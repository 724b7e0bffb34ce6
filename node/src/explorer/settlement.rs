//! Settlement positions per partner: what this brand owes and is owed under each agreement,
//! all time and still open (not settled by a co-signed statement), the latest co-signed
//! statements, a chart of the net position over the settlement periods (`chart`) and the
//! obligation lines, newest first, a page at a time.
//!
//! Every figure comes from what the state machine keeps as it logs each line: the agreement's
//! line totals (`ot/`), the settlement periods' totals (`pt/`) and the line index (`ol/`), so a
//! page reads a bounded number of records whatever the number of lines: one totals record per
//! agreement, at most `chart::CHART_PERIODS_MAX` + 2 period totals, at most [`PAGE_ROWS_MAX`]
//! lines and at most [`STATEMENTS_SHOWN_MAX`] statements.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;

use ledger::money::Currency;
use ledger::state::read::{self, LineCursor};
use ledger::state::{AgreementState, AgreementTotals, LineTotals};
use ledger::statement::ObligationLine;
use ledger::types::{BrandId, EntryId, LogTime};

use maud::html;

use super::chart::{chart, read_bars};
use super::html::{self, badge, card, query, url_component, Html, Section};
use super::{path_param, serve, App, Page, PageError, Params, PAGE_ROWS_MAX};
use crate::api::AppState;
use crate::federation::reconcile::agreements_with;
use crate::federation::settle::{logged, LoggedStatement};
use crate::problem::ApiError;

/// Most co-signed statements an agreement's section lists (the latest).
pub const STATEMENTS_SHOWN_MAX: usize = 12;

/// One agreement's position, from this brand's side.
pub(crate) struct Position {
    pub agreement: AgreementState,
    /// Every line's and the open lines' totals.
    pub totals: AgreementTotals,
    /// The latest logged statements, oldest first, at most [`STATEMENTS_SHOWN_MAX`].
    pub statements: Vec<LoggedStatement>,
}

fn totals(app: &App, a: &AgreementState) -> Result<AgreementTotals, PageError> {
    Ok(
        read::agreement_totals(&app.store, &a.agreement.terms.agreement)
            .map_err(ApiError::internal)?,
    )
}

pub(crate) fn position(app: &App, a: AgreementState) -> Result<Position, PageError> {
    let totals = totals(app, &a)?;
    let mut statements = Vec::new();
    for k in a.statements.keys().rev().take(STATEMENTS_SHOWN_MAX) {
        statements.extend(logged(app, &a, *k)?);
    }
    statements.reverse();
    Ok(Position {
        agreement: a,
        totals,
        statements,
    })
}

/// (what `me` owes, what `me` is owed, `me`'s net position) of line totals, in minor units.
pub(crate) fn sides(t: &LineTotals, a: &AgreementState, me: &BrandId) -> (i64, i64, i64) {
    let terms = &a.agreement.terms;
    (
        t.owes_minor(terms, me),
        t.owed_minor(terms, me),
        t.position_minor(terms, me),
    )
}

fn money(minor: i64, c: &Currency) -> String {
    html::money(minor, c.minor_unit(), c.code())
}

/// `GET /explorer/settlement`: every partner's agreements with their positions.
pub(crate) async fn overview(State(app): AppState) -> Response {
    serve(app, |app, ctx| {
        let mut rows = Vec::new();
        for p in app.federation.partners() {
            for a in agreements_with(&app.store, &ctx.brand, &p.brand)? {
                let t = totals(app, &a)?;
                let (open, all) = (sides(&t.open, &a, &ctx.brand), sides(&t.all, &a, &ctx.brand));
                rows.push((p.brand.clone(), a, open, all));
            }
        }
        let b = html! {
            h1 { "Settlement" }
            p class="lead" {
                "What this brand owes its partners and is owed by them for cross-brand \
                 redemptions, in each agreement's settlement currency. Open amounts are those of \
                 periods no co-signed statement has settled yet; a positive net position means \
                 the partner owes this brand."
            }
            @if rows.is_empty() {
                p class="muted" id="no-agreements" { "No agreement with any partner yet." }
            }
            table id="positions" hidden[rows.is_empty()] {
                thead { tr {
                    th { "partner" } th { "agreement" } th class="num" { "open payable" }
                    th class="num" { "open receivable" } th class="num" { "open net" }
                    th class="num" { "net all time" } th class="num" { "statements" }
                } }
                tbody {
                    @for (brand, a, open, all) in &rows {
                        @let c = a.agreement.terms.settlement_currency;
                        @let id = a.agreement.terms.agreement.as_str();
                        tr data-partner=(brand.as_str()) data-agreement=(id) {
                            td {
                                a class="settlement-link"
                                    href={ "/explorer/settlement/" (url_component(brand.as_str())) } {
                                    (brand.as_str())
                                }
                            }
                            td class="mono" { (id) }
                            td class="num" { (money(open.0, &c)) }
                            td class="num" { (money(open.1, &c)) }
                            td class="num" { (money(open.2, &c)) }
                            td class="num" { (money(all.2, &c)) }
                            td class="num" { (a.statements.len()) }
                        }
                    }
                }
            }
        };
        Ok(Page {
            section: Section::Settlement,
            name: "settlement",
            title: "Settlement".into(),
            body: b.into(),
        })
    })
    .await
}

/// Which page of lines to show: `?agreement=&before=&rows=`.
struct LinesPage {
    /// The agreement the cursor is for (every agreement's when `None`).
    agreement: Option<EntryId>,
    /// Show lines older than this one.
    before: Option<LineCursor>,
    /// Lines per page, 1 to [`PAGE_ROWS_MAX`].
    rows: usize,
}

impl LinesPage {
    fn from_params(p: &Params) -> Result<LinesPage, PageError> {
        let before = p
            .text("before")
            .map(|s| {
                read::parse_line_cursor(s).ok_or_else(|| {
                    PageError::bad_request("before: not a line cursor (<time>.<index>)")
                })
            })
            .transpose()?;
        let rows = p.parse::<usize>("rows")?.unwrap_or(PAGE_ROWS_MAX);
        if !(1..=PAGE_ROWS_MAX).contains(&rows) {
            return Err(PageError::bad_request(format!(
                "rows: 1 to {PAGE_ROWS_MAX}"
            )));
        }
        Ok(LinesPage {
            agreement: p.parse("agreement")?,
            before,
            rows,
        })
    }

    /// The cursor for agreement `id`'s lines.
    fn before(&self, id: &EntryId) -> Option<LineCursor> {
        match &self.agreement {
            Some(a) if a != id => None,
            _ => self.before,
        }
    }
}

/// `GET /explorer/settlement/{partner}?agreement=&before=&rows=`: positions, statements,
/// chart and a page of lines per agreement (older lines of `agreement` before the cursor).
pub(crate) async fn partner(
    State(app): AppState,
    Path(partner): Path<String>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let params = Params::from_query(q);
    serve(app, move |app, ctx| {
        let page = LinesPage::from_params(&params?)?;
        let brand: BrandId = path_param("brand id", &partner)?;
        if app.federation.partner(&brand).is_none() {
            return Err(PageError::not_found(format!(
                "{brand} is not a partner of this node"
            )));
        }
        let agreements = agreements_with(&app.store, &ctx.brand, &brand)?;
        let now = crate::sequencer::now();
        let mut sections = Vec::with_capacity(agreements.len());
        let no_agreements = agreements.is_empty();
        for a in agreements {
            let pos = position(app, a)?;
            sections.push(agreement_section(
                app, &pos, &ctx.brand, &brand, &page, now,
            )?);
        }
        let name = brand.as_str();
        let me = ctx.brand.as_str();
        let b = html! {
            h1 {
                "Settlement with "
                a href={ "/explorer/partners/" (url_component(name)) } { (name) }
            }
            p class="lead" {
                "Positions of " (me) " towards " (name) ", from the obligation lines of " (me)
                "'s own log (the reconciliation compares them with the verified mirror of " (name)
                "'s). Positive: " (name) " owes " (me) "."
            }
            @if no_agreements {
                p class="muted" id="no-agreements" { "No agreement with this partner." }
            }
            @for section in &sections { (section) }
        };
        Ok(Page {
            section: Section::Settlement,
            name: "settlement-partner",
            title: format!("Settlement with {brand}"),
            body: b.into(),
        })
    })
    .await
}

fn agreement_section(
    app: &App,
    pos: &Position,
    me: &BrandId,
    partner: &BrandId,
    page: &LinesPage,
    now: LogTime,
) -> Result<Html, PageError> {
    let a = &pos.agreement;
    let terms = &a.agreement.terms;
    let c = terms.settlement_currency;
    let (all, open) = (
        sides(&pos.totals.all, a, me),
        sides(&pos.totals.open, a, me),
    );
    let limit = i64::try_from(terms.credit_limit_minor).unwrap_or(i64::MAX);
    let i_pay = terms.directions.iter().any(|d| &d.payer == me);
    let bars = read_bars(&app.store, a, me, now, all.2).map_err(ApiError::internal)?;
    let lines = read::latest_lines(
        &app.store,
        &terms.agreement,
        page.before(&terms.agreement),
        page.rows,
    )
    .map_err(ApiError::internal)?;
    // One more record says whether there is an older page.
    let more = match lines.last() {
        Some(l) if lines.len() == page.rows => {
            !read::latest_lines(&app.store, &terms.agreement, Some((l.time, l.index)), 1)
                .map_err(ApiError::internal)?
                .is_empty()
        }
        _ => false,
    };
    let id = terms.agreement.as_str();
    let value = |id: &str, text: String| html! { div class="value" id=(id) { (text) } };
    Ok(html! {
        section class="agreement" data-agreement=(id) data-currency=(c.code())
            data-payable=(all.0) data-receivable=(all.1) data-net=(all.2)
            data-open-payable=(open.0) data-open-receivable=(open.1) data-open-net=(open.2)
            data-statements=(a.statements.len()) data-lines=(pos.totals.all.lines()) {
            h2 { "Agreement " span class="mono" { (id) } }
            p class="muted" {
                (terms
                    .directions
                    .iter()
                    .map(|d| format!("{} pays {}", d.payer, d.payee))
                    .collect::<Vec<_>>()
                    .join(", "))
                "; settled in " (c.code()) " every " (html::duration(terms.period_ms.get()))
                "; fee " (terms.fee_bps) " bp; credit limit " (money(limit, &c)) "."
            }
            div class="cards" {
                (card("open payable", value("open-payable", money(open.0, &c))))
                (card("open receivable", value("open-receivable", money(open.1, &c))))
                (signed_card("open net position", open.2, &c, "open-net"))
                (card("payable, all time", value("payable", money(all.0, &c))))
                (card("receivable, all time", value("receivable", money(all.1, &c))))
                @if i_pay {
                    (card("credit left", value("credit-left", money(limit.saturating_sub(open.0), &c))))
                } @else {
                    (signed_card("net position, all time", all.2, &c, "net"))
                }
            }
            (chart(&bars, a, me))
            (statements_table(pos, me))
            (lines_table(pos, me, partner, page, &lines, more))
        }
    }
    .into())
}

fn signed_card(label: &str, v: i64, c: &Currency, id: &str) -> Html {
    let class = match v.signum() {
        1 => " pos",
        -1 => " neg",
        _ => "",
    };
    card(
        label,
        html! { div class={ "value" (class) } id=(id) { (money(v, c)) } },
    )
}

fn statements_table(pos: &Position, me: &BrandId) -> Html {
    let c = pos.agreement.agreement.terms.settlement_currency;
    let n = pos.agreement.statements.len();
    html! {
        h3 { "Co-signed statements" }
        @if pos.statements.is_empty() {
            p class="muted" { "No period is settled yet." }
        } @else {
            @if n > pos.statements.len() {
                p class="muted" { "The latest " (pos.statements.len()) " of " (n) "." }
            }
            table class="statements" {
                thead { tr {
                    th class="num" { "period" } th { "from (UTC)" } th { "to" }
                    th class="num" { "lines" } th { "gross" } th { "net" }
                    th class="num" { "our position" } th { "signed by" } th class="num" { "entry" }
                } }
                tbody {
                    @for s in &pos.statements {
                        @let st = &s.statement.statement;
                        @let gross: Vec<String> = st
                            .gross
                            .iter()
                            .filter(|g| g.lines > 0)
                            .map(|g| format!("{} → {}: {}", g.payer, g.payee, money(g.total_minor, &c)))
                            .collect();
                        @let signers: Vec<String> = s
                            .statement
                            .signatures
                            .iter()
                            .map(|x| x.brand.to_string())
                            .collect();
                        @let i = s.receipt.index;
                        tr data-period=(s.period) data-net-payer=(st.net.payer.as_str())
                            data-net-payee=(st.net.payee.as_str()) data-net-amount=(st.net.amount_minor)
                            data-index=(i) {
                            td class="num" { (s.period) }
                            (html::time_cell(st.period.from().get()))
                            (html::time_cell(st.period.to().get()))
                            td class="num" { (st.lines) }
                            td { @if gross.is_empty() { "nothing" } @else { (gross.join("; ")) } }
                            td {
                                (st.net.payer.as_str()) " owes " (st.net.payee.as_str()) " "
                                (money(i64::try_from(st.net.amount_minor).unwrap_or(i64::MAX), &c))
                            }
                            td class="num" { (money(st.position_minor(me).unwrap_or(0), &c)) }
                            td { (signers.join(", ")) }
                            td class="num" { a href={ "/explorer/entries/" (i) } { (i) } }
                        }
                    }
                }
            }
        }
    }
    .into()
}

/// The link to agreement `id`'s lines older than `before`, `rows` a page.
fn lines_link(partner: &BrandId, id: &EntryId, before: Option<LineCursor>, rows: usize) -> String {
    format!(
        "/explorer/settlement/{}{}#lines-{}",
        url_component(partner.as_str()),
        query(&[
            ("agreement", Some(id.to_string())),
            ("before", before.map(read::format_line_cursor)),
            ("rows", (rows != PAGE_ROWS_MAX).then(|| rows.to_string())),
        ]),
        url_component(id.as_str()),
    )
}

fn lines_table(
    pos: &Position,
    me: &BrandId,
    partner: &BrandId,
    page: &LinesPage,
    lines: &[ObligationLine],
    more: bool,
) -> Html {
    let terms = &pos.agreement.agreement.terms;
    let c = terms.settlement_currency;
    let total = pos.totals.all.lines();
    let before = page.before(&terms.agreement);
    let older = lines.last().filter(|_| more).map(|l| {
        lines_link(
            partner,
            &terms.agreement,
            Some((l.time, l.index)),
            page.rows,
        )
    });
    let nav = html! {
        div class="pager lines-pager" {
            @if before.is_some() {
                a class="pager-link lines-newest"
                    href=(lines_link(partner, &terms.agreement, None, page.rows)) { "« newest" }
            }
            @if let Some(h) = &older {
                a class="pager-link lines-older" href=(h) { "older »" }
            }
        }
    };
    html! {
        h3 id={ "lines-" (terms.agreement.as_str()) } { "Obligation lines" }
        p class="muted" {
            (html::int(lines.len() as u64)) " of " (html::int(total)) ", newest first"
            @if before.is_some() { " (older than the previous page)" }
            "; positive amounts are owed to " (me.as_str()) "."
        }
        @if lines.is_empty() {
            (nav)
        } @else {
            table class="lines" {
                thead { tr {
                    th { "time (UTC)" } th { "redemption" } th { "refund" } th { "direction" }
                    th class="num" { "amount" } th class="num" { "period" } th { "state" }
                    th class="num" { "entry" }
                } }
                tbody {
                    @for l in lines {
                        @let signed = if &l.payee == me { l.amount_minor } else { -l.amount_minor };
                        @let i = l.index.get();
                        tr data-index=(i) data-amount=(signed) {
                            (html::time_cell(l.time.get()))
                            td class="mono" { (l.redemption.as_str()) }
                            td class="mono" { (l.refund.as_ref().map_or("", |r| r.as_str())) }
                            td { (l.payer.as_str()) " → " (l.payee.as_str()) }
                            td class="num" { (money(signed, &c)) }
                            td class="num" {
                                @match terms.period_of(l.time) {
                                    Some(k) => (k),
                                    None => "—",
                                }
                            }
                            td {
                                @if pos.agreement.settled(l.time) {
                                    (badge("ok", "settled"))
                                } @else {
                                    (badge("warn", "open"))
                                }
                            }
                            td class="num" { a href={ "/explorer/entries/" (i) } { (i) } }
                        }
                    }
                }
            }
            (nav)
        }
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::explorer::chart::tests::agreement;
    use ledger::types::LogIndex;

    fn line(payer: &str, payee: &str, amount: i64, time: u64, i: u64) -> ObligationLine {
        ObligationLine {
            redemption: format!("r{i}").parse::<EntryId>().unwrap(),
            refund: None,
            payer: payer.parse().unwrap(),
            payee: payee.parse().unwrap(),
            amount_minor: amount,
            time: LogTime::new(time).unwrap(),
            index: LogIndex::new(i).unwrap(),
        }
    }

    #[test]
    fn sides_split_line_totals_into_what_we_owe_and_are_owed() {
        let me: BrandId = "coffee".parse().unwrap();
        let a = agreement(1000, &[]);
        let mut t = LineTotals::default();
        // air → coffee 500, coffee → air 150 less a refund of 30.
        t.gross[0].obligations_minor = 500;
        t.gross[1].obligations_minor = 150;
        t.gross[1].refunds_minor = 30;
        assert_eq!(sides(&t, &a, &me), (120, 500, 380));
        let air: BrandId = "air".parse().unwrap();
        assert_eq!(sides(&t, &a, &air), (500, 120, -380));
        let other: BrandId = "gym".parse().unwrap();
        assert_eq!(sides(&t, &a, &other), (0, 0, 0));
    }

    fn page(query: &[(&str, &str)]) -> Result<LinesPage, PageError> {
        let q = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LinesPage::from_params(&Params(q))
    }

    #[test]
    fn a_page_of_lines_links_to_the_older_ones_by_cursor() {
        let me: BrandId = "coffee".parse().unwrap();
        let partner: BrandId = "air".parse().unwrap();
        let mut pos = Position {
            agreement: agreement(1000, &[]),
            totals: AgreementTotals::default(),
            statements: Vec::new(),
        };
        pos.totals.all.gross[0].lines = 3;
        let newest = [
            line("air", "coffee", 5, 300, 9),
            line("air", "coffee", 7, 200, 8),
        ];
        // The first page of two of three lines: an older page, from the last line shown.
        let first = page(&[("rows", "2")]).unwrap();
        let html = lines_table(&pos, &me, &partner, &first, &newest, true);
        assert!(html.contains("2 of 3"), "{html}");
        assert!(
            html.contains(
                "href=\"/explorer/settlement/air?agreement=agr-1&amp;before=200.8&amp;rows=2#lines-agr-1\""
            ),
            "{html}"
        );
        assert!(!html.contains("lines-newest"));
        // The last page: the rest, a link back to the newest, none further.
        let next = page(&[("agreement", "agr-1"), ("before", "200.8"), ("rows", "2")]).unwrap();
        assert_eq!(
            next.before(&"agr-1".parse().unwrap()),
            read::parse_line_cursor("200.8")
        );
        assert_eq!(next.before(&"agr-2".parse().unwrap()), None);
        let html = lines_table(
            &pos,
            &me,
            &partner,
            &next,
            &[line("air", "coffee", 1, 100, 4)],
            false,
        );
        assert!(
            html.contains("lines-newest") && !html.contains("lines-older"),
            "{html}"
        );
        // Without older lines, no older page.
        let html = lines_table(&pos, &me, &partner, &first, &newest, false);
        assert!(!html.contains("lines-older"), "{html}");
        // Bad parameters are 400s.
        for bad in [
            &[("before", "x")][..],
            &[("rows", "0")],
            &[("rows", "51")],
            &[("agreement", "a b")],
        ] {
            assert_eq!(page(bad).err().unwrap().status, 400, "{bad:?}");
        }
    }
}
