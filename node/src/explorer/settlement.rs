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
use std::fmt::Write;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;

use ledger::money::Currency;
use ledger::state::read::{self, LineCursor};
use ledger::state::{AgreementState, AgreementTotals, LineTotals};
use ledger::statement::ObligationLine;
use ledger::types::{BrandId, EntryId, LogTime};

use super::chart::{chart, read_bars};
use super::html::{self, badge, card, escape, query, url_component, Section};
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
        let mut b = String::from(
            "<h1>Settlement</h1><p class=\"lead\">What this brand owes its partners and is owed \
             by them for cross-brand redemptions, in each agreement's settlement currency. Open \
             amounts are those of periods no co-signed statement has settled yet; a positive \
             net position means the partner owes this brand.</p>",
        );
        let mut any = false;
        b.push_str(
            "<table id=\"positions\"><thead><tr><th>partner</th><th>agreement</th>\
             <th class=\"num\">open payable</th><th class=\"num\">open receivable</th>\
             <th class=\"num\">open net</th><th class=\"num\">net all time</th>\
             <th class=\"num\">statements</th></tr></thead><tbody>",
        );
        for p in app.federation.partners() {
            for a in agreements_with(&app.store, &ctx.brand, &p.brand)? {
                any = true;
                let t = totals(app, &a)?;
                let c = a.agreement.terms.settlement_currency;
                let (open, all) = (sides(&t.open, &a, &ctx.brand), sides(&t.all, &a, &ctx.brand));
                let _ = write!(
                    b,
                    "<tr data-partner=\"{brand}\" data-agreement=\"{id}\"><td>\
                     <a class=\"settlement-link\" href=\"/explorer/settlement/{brand_url}\">{brand}</a></td>\
                     <td class=\"mono\">{id}</td><td class=\"num\">{op}</td><td class=\"num\">{or}</td>\
                     <td class=\"num\">{on}</td><td class=\"num\">{an}</td><td class=\"num\">{n}</td></tr>",
                    brand = escape(p.brand.as_str()),
                    brand_url = url_component(p.brand.as_str()),
                    id = escape(a.agreement.terms.agreement.as_str()),
                    op = money(open.0, &c),
                    or = money(open.1, &c),
                    on = money(open.2, &c),
                    an = money(all.2, &c),
                    n = a.statements.len(),
                );
            }
        }
        b.push_str("</tbody></table>");
        if !any {
            b = b.replace(
                "<table id=\"positions\">",
                "<p class=\"muted\" id=\"no-agreements\">No agreement with any partner yet.</p>\
                 <table id=\"positions\" hidden>",
            );
        }
        Ok(Page {
            section: Section::Settlement,
            name: "settlement",
            title: "Settlement".into(),
            body: b,
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
        let mut b = format!(
            "<h1>Settlement with <a href=\"/explorer/partners/{url}\">{name}</a></h1>\
             <p class=\"lead\">Positions of {me} towards {name}, from the obligation lines of \
             {me}'s own log (the reconciliation compares them with the verified mirror of \
             {name}'s). Positive: {name} owes {me}.</p>",
            url = url_component(brand.as_str()),
            name = escape(brand.as_str()),
            me = escape(ctx.brand.as_str()),
        );
        if agreements.is_empty() {
            b.push_str(
                "<p class=\"muted\" id=\"no-agreements\">No agreement with this partner.</p>",
            );
        }
        let now = crate::sequencer::now();
        for a in agreements {
            let pos = position(app, a)?;
            b.push_str(&agreement_section(
                app, &pos, &ctx.brand, &brand, &page, now,
            )?);
        }
        Ok(Page {
            section: Section::Settlement,
            name: "settlement-partner",
            title: format!("Settlement with {brand}"),
            body: b,
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
) -> Result<String, PageError> {
    let a = &pos.agreement;
    let terms = &a.agreement.terms;
    let c = terms.settlement_currency;
    let mut b = String::new();
    let (all, open) = (
        sides(&pos.totals.all, a, me),
        sides(&pos.totals.open, a, me),
    );
    let limit = i64::try_from(terms.credit_limit_minor).unwrap_or(i64::MAX);
    let i_pay = terms.directions.iter().any(|d| &d.payer == me);
    let _ = write!(
        b,
        "<section class=\"agreement\" data-agreement=\"{id}\" data-currency=\"{cur}\" \
         data-payable=\"{ap}\" data-receivable=\"{ar}\" data-net=\"{an}\" \
         data-open-payable=\"{op}\" data-open-receivable=\"{or}\" data-open-net=\"{on}\" \
         data-statements=\"{ns}\" data-lines=\"{nl}\">\
         <h2>Agreement <span class=\"mono\">{id}</span></h2><p class=\"muted\">{dirs}; \
         settled in {cur} every {period}; fee {fee} bp; credit limit {limit}.</p>\
         <div class=\"cards\">{c1}{c2}{c3}{c4}{c5}{c6}</div>",
        id = escape(terms.agreement.as_str()),
        cur = escape(c.code()),
        ap = all.0,
        ar = all.1,
        an = all.2,
        op = open.0,
        or = open.1,
        on = open.2,
        ns = a.statements.len(),
        nl = pos.totals.all.lines(),
        dirs = escape(
            &terms
                .directions
                .iter()
                .map(|d| format!("{} pays {}", d.payer, d.payee))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        period = html::duration(terms.period_ms.get()),
        fee = terms.fee_bps,
        limit = escape(&money(limit, &c)),
        c1 = card("open payable", &money(open.0, &c), " id=\"open-payable\""),
        c2 = card(
            "open receivable",
            &money(open.1, &c),
            " id=\"open-receivable\""
        ),
        c3 = signed_card("open net position", open.2, &c, "open-net"),
        c4 = card("payable, all time", &money(all.0, &c), " id=\"payable\""),
        c5 = card(
            "receivable, all time",
            &money(all.1, &c),
            " id=\"receivable\""
        ),
        c6 = if i_pay {
            card(
                "credit left",
                &money(limit.saturating_sub(open.0), &c),
                " id=\"credit-left\"",
            )
        } else {
            signed_card("net position, all time", all.2, &c, "net")
        },
    );
    let bars = read_bars(&app.store, a, me, now, all.2).map_err(ApiError::internal)?;
    b.push_str(&chart(&bars, a, me));
    b.push_str(&statements_table(pos, me));
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
    b.push_str(&lines_table(pos, me, partner, page, &lines, more));
    b.push_str("</section>");
    Ok(b)
}

fn signed_card(label: &str, v: i64, c: &Currency, id: &str) -> String {
    let class = match v.signum() {
        1 => " pos",
        -1 => " neg",
        _ => "",
    };
    format!(
        "<div class=\"card\"><div class=\"label\">{}</div><div class=\"value{class}\" id=\"{}\">{}</div></div>",
        escape(label),
        escape(id),
        escape(&money(v, c))
    )
}

fn statements_table(pos: &Position, me: &BrandId) -> String {
    let c = pos.agreement.agreement.terms.settlement_currency;
    let mut b = String::from("<h3>Co-signed statements</h3>");
    if pos.statements.is_empty() {
        b.push_str("<p class=\"muted\">No period is settled yet.</p>");
        return b;
    }
    let n = pos.agreement.statements.len();
    if n > pos.statements.len() {
        let _ = write!(
            b,
            "<p class=\"muted\">The latest {} of {n}.</p>",
            pos.statements.len()
        );
    }
    b.push_str(
        "<table class=\"statements\"><thead><tr><th class=\"num\">period</th><th>from (UTC)</th>\
         <th>to</th><th class=\"num\">lines</th><th>gross</th><th>net</th>\
         <th class=\"num\">our position</th><th>signed by</th><th class=\"num\">entry</th>\
         </tr></thead><tbody>",
    );
    for s in &pos.statements {
        let st = &s.statement.statement;
        let gross: Vec<String> = st
            .gross
            .iter()
            .filter(|g| g.lines > 0)
            .map(|g| format!("{} → {}: {}", g.payer, g.payee, money(g.total_minor, &c)))
            .collect();
        let signers: Vec<String> = s
            .statement
            .signatures
            .iter()
            .map(|x| x.brand.to_string())
            .collect();
        let _ = write!(
            b,
            "<tr data-period=\"{k}\" data-net-payer=\"{np}\" data-net-payee=\"{ne}\" \
             data-net-amount=\"{na}\" data-index=\"{i}\"><td class=\"num\">{k}</td>{from}{to}<td class=\"num\">{lines}</td><td>{gross}</td><td>{np} owes {ne} {net}</td>\
             <td class=\"num\">{ours}</td><td>{signers}</td><td class=\"num\">\
             <a href=\"/explorer/entries/{i}\">{i}</a></td></tr>",
            k = s.period,
            np = escape(st.net.payer.as_str()),
            ne = escape(st.net.payee.as_str()),
            na = st.net.amount_minor,
            i = s.receipt.index,
            from = html::time_cell(st.period.from().get()),
            to = html::time_cell(st.period.to().get()),
            lines = st.lines,
            gross = escape(&if gross.is_empty() {
                "nothing".into()
            } else {
                gross.join("; ")
            }),
            net = escape(&money(
                i64::try_from(st.net.amount_minor).unwrap_or(i64::MAX),
                &c
            )),
            ours = escape(&money(st.position_minor(me).unwrap_or(0), &c)),
            signers = escape(&signers.join(", ")),
        );
    }
    b.push_str("</tbody></table>");
    b
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
) -> String {
    let terms = &pos.agreement.agreement.terms;
    let c = terms.settlement_currency;
    let total = pos.totals.all.lines();
    let before = page.before(&terms.agreement);
    let mut b = format!(
        "<h3 id=\"lines-{id}\">Obligation lines</h3><p class=\"muted\">{shown} of {total}, \
         newest first{from}; positive amounts are owed to {me}.</p>",
        id = escape(terms.agreement.as_str()),
        shown = html::int(lines.len() as u64),
        total = html::int(total),
        from = if before.is_some() {
            " (older than the previous page)"
        } else {
            ""
        },
        me = escape(me.as_str())
    );
    let older = lines.last().filter(|_| more).map(|l| {
        lines_link(
            partner,
            &terms.agreement,
            Some((l.time, l.index)),
            page.rows,
        )
    });
    let mut nav = String::from("<div class=\"pager lines-pager\">");
    if before.is_some() {
        let _ = write!(
            nav,
            "<a class=\"pager-link lines-newest\" href=\"{}\">« newest</a>",
            escape(&lines_link(partner, &terms.agreement, None, page.rows))
        );
    }
    if let Some(h) = &older {
        let _ = write!(
            nav,
            "<a class=\"pager-link lines-older\" href=\"{}\">older »</a>",
            escape(h)
        );
    }
    nav.push_str("</div>");
    if lines.is_empty() {
        b.push_str(&nav);
        return b;
    }
    b.push_str(
        "<table class=\"lines\"><thead><tr><th>time (UTC)</th><th>redemption</th><th>refund</th>\
         <th>direction</th><th class=\"num\">amount</th><th class=\"num\">period</th>\
         <th>state</th><th class=\"num\">entry</th></tr></thead><tbody>",
    );
    for l in lines {
        let signed = if &l.payee == me {
            l.amount_minor
        } else {
            -l.amount_minor
        };
        let settled = pos.agreement.settled(l.time);
        let _ = write!(
            b,
            "<tr data-index=\"{i}\" data-amount=\"{signed}\">{time}\
             <td class=\"mono\">{red}</td><td class=\"mono\">{rf}</td><td>{payer} → {payee}</td>\
             <td class=\"num\">{amount}</td><td class=\"num\">{k}</td><td>{state}</td>\
             <td class=\"num\"><a href=\"/explorer/entries/{i}\">{i}</a></td></tr>",
            i = l.index.get(),
            time = html::time_cell(l.time.get()),
            red = escape(l.redemption.as_str()),
            rf = escape(l.refund.as_ref().map_or("", |r| r.as_str())),
            payer = escape(l.payer.as_str()),
            payee = escape(l.payee.as_str()),
            amount = escape(&money(signed, &c)),
            k = terms
                .period_of(l.time)
                .map_or("—".into(), |k| k.to_string()),
            state = if settled {
                badge("ok", "settled")
            } else {
                badge("warn", "open")
            },
        );
    }
    b.push_str("</tbody></table>");
    b.push_str(&nav);
    b
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
