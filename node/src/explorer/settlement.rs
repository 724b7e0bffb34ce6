//! Settlement positions per partner: what this brand owes and is owed under each agreement,
//! all time and still open (not settled by a co-signed statement), the co-signed statements,
//! and a chart of the net position over the settlement periods (`chart`).
//!
//! The sums are `ledger::statement::compute`'s over the obligation lines of this node's own log
//! (`federation::reconcile::lines`), the same arithmetic the statements use.

use std::fmt::Write;

use axum::extract::{Path, State};
use axum::response::Response;

use ledger::money::Currency;
use ledger::state::AgreementState;
use ledger::statement::{compute, ObligationLine, Period, Statement};
use ledger::types::{BrandId, LogTime};

use super::chart::chart;
use super::html::{self, badge, card, escape, url_component, Section};
use super::{path_param, serve, App, Page, PageError, PAGE_ROWS_MAX};
use crate::api::AppState;
use crate::federation::reconcile::{agreements_with, lines};
use crate::federation::settle::{logged, LoggedStatement};

/// One agreement's position, from this brand's side.
pub(crate) struct Position {
    pub agreement: AgreementState,
    pub lines: Vec<ObligationLine>,
    /// Every line, whatever its period.
    pub all: Result<Statement, String>,
    /// The lines of periods no logged statement settled.
    pub open: Result<Statement, String>,
    pub statements: Vec<LoggedStatement>,
}

/// Every time there is: the period of an all-time statement.
pub(crate) fn all_time() -> Period {
    Period::new(LogTime::MIN, LogTime::MAX).expect("0 < 2^53 - 1")
}

pub(crate) fn position(app: &App, a: AgreementState) -> Result<Position, PageError> {
    let terms = &a.agreement.terms;
    let lines = lines(&app.store, &terms.agreement, all_time())?;
    let open_lines: Vec<ObligationLine> = lines
        .iter()
        .filter(|l| !a.settled(l.time))
        .cloned()
        .collect();
    let all = compute(terms, all_time(), &lines).map_err(|e| e.to_string());
    let open = compute(terms, all_time(), &open_lines).map_err(|e| e.to_string());
    let mut statements = Vec::new();
    for k in a.statements.keys() {
        statements.extend(logged(app, &a, *k)?);
    }
    Ok(Position {
        agreement: a,
        lines,
        all,
        open,
        statements,
    })
}

/// (what `me` owes, what `me` is owed, `me`'s net position) of a statement, in minor units.
pub(crate) fn sides(st: &Statement, me: &BrandId) -> (i64, i64, i64) {
    let owes = st
        .gross
        .iter()
        .filter(|g| &g.payer == me)
        .map(|g| g.total_minor)
        .sum();
    let owed = st
        .gross
        .iter()
        .filter(|g| &g.payee == me)
        .map(|g| g.total_minor)
        .sum();
    (owes, owed, st.position_minor(me).unwrap_or(0))
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
                let pos = position(app, a)?;
                let c = pos.agreement.agreement.terms.settlement_currency;
                let cell = |r: &Result<Statement, String>, f: &dyn Fn((i64, i64, i64)) -> i64| {
                    match r {
                        Ok(st) => money(f(sides(st, &ctx.brand)), &c),
                        Err(e) => badge("bad", e),
                    }
                };
                let _ = write!(
                    b,
                    "<tr data-partner=\"{brand}\" data-agreement=\"{id}\"><td>\
                     <a class=\"settlement-link\" href=\"/explorer/settlement/{brand_url}\">{brand}</a></td>\
                     <td class=\"mono\">{id}</td><td class=\"num\">{op}</td><td class=\"num\">{or}</td>\
                     <td class=\"num\">{on}</td><td class=\"num\">{an}</td><td class=\"num\">{n}</td></tr>",
                    brand = escape(p.brand.as_str()),
                    brand_url = url_component(p.brand.as_str()),
                    id = escape(pos.agreement.agreement.terms.agreement.as_str()),
                    op = cell(&pos.open, &|s| s.0),
                    or = cell(&pos.open, &|s| s.1),
                    on = cell(&pos.open, &|s| s.2),
                    an = cell(&pos.all, &|s| s.2),
                    n = pos.statements.len(),
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

/// `GET /explorer/settlement/{partner}`: positions, statements, chart and lines per agreement.
pub(crate) async fn partner(State(app): AppState, Path(partner): Path<String>) -> Response {
    serve(app, move |app, ctx| {
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
            b.push_str(&agreement_section(&pos, &ctx.brand, now));
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

fn agreement_section(pos: &Position, me: &BrandId, now: LogTime) -> String {
    let terms = &pos.agreement.agreement.terms;
    let c = terms.settlement_currency;
    let mut b = String::new();
    let (all, open) = match (&pos.all, &pos.open) {
        (Ok(all), Ok(open)) => (sides(all, me), sides(open, me)),
        (Err(e), _) | (_, Err(e)) => {
            let _ = write!(
                b,
                "<section class=\"agreement\" data-agreement=\"{}\"><h2>Agreement {}</h2><p>{}</p></section>",
                escape(terms.agreement.as_str()),
                escape(terms.agreement.as_str()),
                badge("bad", &format!("the lines do not sum: {e}"))
            );
            return b;
        }
    };
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
        ns = pos.statements.len(),
        nl = pos.lines.len(),
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
    b.push_str(&chart(&pos.lines, &pos.agreement, me, now));
    b.push_str(&statements_table(pos, me));
    b.push_str(&lines_table(pos, me));
    b.push_str("</section>");
    b
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

fn lines_table(pos: &Position, me: &BrandId) -> String {
    let terms = &pos.agreement.agreement.terms;
    let c = terms.settlement_currency;
    let mut lines: Vec<&ObligationLine> = pos.lines.iter().collect();
    lines.sort_by_key(|l| std::cmp::Reverse((l.time, l.index)));
    let shown = lines.len().min(PAGE_ROWS_MAX);
    let mut b = format!(
        "<h3>Obligation lines</h3><p class=\"muted\">The latest {} of {}, newest first; \
         positive amounts are owed to {}.</p>",
        shown,
        lines.len(),
        escape(me.as_str())
    );
    if lines.is_empty() {
        return b;
    }
    b.push_str(
        "<table class=\"lines\"><thead><tr><th>time (UTC)</th><th>redemption</th><th>refund</th>\
         <th>direction</th><th class=\"num\">amount</th><th class=\"num\">period</th>\
         <th>state</th><th class=\"num\">entry</th></tr></thead><tbody>",
    );
    for l in lines.into_iter().take(shown) {
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
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::explorer::chart::tests::{agreement, line};

    #[test]
    fn sides_split_a_statement_into_what_we_owe_and_are_owed() {
        let me: BrandId = "coffee".parse().unwrap();
        let a = agreement(1000, &[]);
        let lines = [
            line("air", "coffee", 500, 100, 1),
            line("coffee", "air", 120, 200, 2),
        ];
        let st = compute(&a.agreement.terms, all_time(), &lines).unwrap();
        assert_eq!(sides(&st, &me), (120, 500, 380));
        let air: BrandId = "air".parse().unwrap();
        assert_eq!(sides(&st, &air), (500, 120, -380));
    }
}
