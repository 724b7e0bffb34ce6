//! The settlement chart: `me`'s net position towards a partner under one agreement, per
//! settlement period, as inline SVG (a bar for what each period added, a line for the
//! position at each period's end, settled periods shaded). No script: each period's figures
//! are in a `<title>` tooltip and in `data-*` attributes.

use std::collections::BTreeMap;

use ledger::money::Currency;
use ledger::state::{read, AgreementState, RecordSource, StateError};
use ledger::types::{BrandId, LogTime};

use maud::html;

use super::html::{self, Html};

/// Most settlement periods the chart shows (the latest ones).
pub const CHART_PERIODS_MAX: usize = 48;

fn money(minor: i64, c: &Currency) -> String {
    html::money(minor, c.minor_unit(), c.code())
}

/// One settlement period of the chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bar {
    pub period: u64,
    /// What the period's lines add to `me`'s position (positive: owed to `me`).
    pub flow: i64,
    /// `me`'s net position at the end of the period, all earlier lines included.
    pub cumulative: i64,
    pub settled: bool,
}

/// The chart's bars for periods `start..=last`, from the flows of the periods among them that
/// have lines (`flows`, by period) and `me`'s net position after every line (`position`,
/// the agreement's all-time totals): the position at each period's end is what is left of it
/// after taking away the flows of the later periods shown.
pub(crate) fn bars(
    flows: &BTreeMap<u64, i64>,
    start: u64,
    last: u64,
    position: i64,
    agreement: &AgreementState,
) -> Vec<Bar> {
    if start > last {
        return Vec::new();
    }
    let shown: i64 = flows.range(start..=last).map(|(_, f)| *f).sum();
    let mut cumulative = position.saturating_sub(shown);
    (start..=last)
        .map(|k| {
            let flow = flows.get(&k).copied().unwrap_or(0);
            cumulative = cumulative.saturating_add(flow);
            Bar {
                period: k,
                flow,
                cumulative,
                settled: agreement.statements.contains_key(&k),
            }
        })
        .collect()
}

/// Reads the chart's bars from the agreement's period totals: every period from the first
/// with lines to the last with lines or `now`'s, whichever is later, the latest
/// [`CHART_PERIODS_MAX`] of them. `position` is `me`'s all-time net position (the agreement
/// totals'), which the last bar ends at. Reads at most [`CHART_PERIODS_MAX`] + 2 records,
/// whatever the number of lines or periods.
pub(crate) fn read_bars(
    src: &dyn RecordSource,
    agreement: &AgreementState,
    me: &BrandId,
    now: LogTime,
    position: i64,
) -> Result<Vec<Bar>, StateError> {
    let terms = &agreement.agreement.terms;
    let id = &terms.agreement;
    let newest = read::period_totals(src, id, 0..u64::MAX, 1, true)?;
    let Some(&(last_line, _)) = newest.first() else {
        return Ok(Vec::new());
    };
    let last = terms.period_of(now).unwrap_or(last_line).max(last_line);
    let lo = last.saturating_sub(CHART_PERIODS_MAX as u64 - 1);
    let shown = read::period_totals(
        src,
        id,
        lo..last.saturating_add(1),
        CHART_PERIODS_MAX,
        false,
    )?;
    let earlier = lo > 0 && !read::period_totals(src, id, 0..lo, 1, true)?.is_empty();
    let start = match shown.first() {
        Some((k, _)) if !earlier => *k,
        _ => lo,
    };
    let flows: BTreeMap<u64, i64> = shown
        .iter()
        .map(|(k, t)| (*k, t.position_minor(terms, me)))
        .collect();
    Ok(bars(&flows, start, last, position, agreement))
}

/// The inline SVG chart of [`read_bars`]: a bar per period (what it added to the position) and
/// the cumulative net position as a line.
pub(crate) fn chart(bars: &[Bar], agreement: &AgreementState, me: &BrandId) -> Html {
    let terms = &agreement.agreement.terms;
    let c = terms.settlement_currency;
    if bars.is_empty() {
        return html! { h3 { "Net position over time" } p class="muted" { "No obligations yet." } }
            .into();
    }
    let (w, h) = (960.0_f64, 280.0_f64);
    let (left, right, top, bottom) = (96.0, 16.0, 16.0, 52.0);
    let lo = bars
        .iter()
        .flat_map(|b| [b.flow, b.cumulative])
        .min()
        .unwrap_or(0)
        .min(0);
    let hi = bars
        .iter()
        .flat_map(|b| [b.flow, b.cumulative])
        .max()
        .unwrap_or(0)
        .max(0);
    let span = ((hi - lo) as f64).max(1.0) * 1.1;
    let base = lo as f64 - ((hi - lo) as f64).max(1.0) * 0.05;
    let y = |v: i64| top + (h - top - bottom) * (1.0 - (v as f64 - base) / span);
    let slot = (w - left - right) / bars.len() as f64;
    // Coordinates to one decimal, as SVG attribute values.
    let d1 = |v: f64| format!("{v:.1}");
    let zero = y(0);
    let label_every = bars.len().div_ceil(8).max(1);
    let points: Vec<(f64, f64)> = bars
        .iter()
        .enumerate()
        .map(|(i, bar)| (left + slot * i as f64 + slot / 2.0, y(bar.cumulative)))
        .collect();
    let path: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    let period_len = html::duration(terms.period_ms.get());
    let markup = html! {
        h3 { "Net position over time" }
        div class="chart" {
            svg id="chart" viewBox={ "0 0 " (w) " " (h) } role="img"
                aria-label="net position per settlement period" xmlns="http://www.w3.org/2000/svg"
                font-family="system-ui, sans-serif" font-size="11" {
                // Grid and axis labels: five values from `lo` to `hi`.
                @for i in 0..=4 {
                    @let v = lo + (hi - lo) * i / 4;
                    @let yy = y(v);
                    line x1=(left) x2=(w - right) y1=(d1(yy)) y2=(d1(yy)) stroke="#e4e7ee" {}
                    text x=(left - 6.0) y=(d1(yy + 4.0)) text-anchor="end" fill="#5b6474" {
                        (money(v, &c))
                    }
                }
                line x1=(left) x2=(w - right) y1=(d1(zero)) y2=(d1(zero)) stroke="#8a93a6" {}
                @for (i, bar) in bars.iter().enumerate() {
                    @let x = left + slot * i as f64;
                    @let (y0, y1) = (zero.min(y(bar.flow)), zero.max(y(bar.flow)));
                    @let from = ledger::statement::period_bounds(terms, bar.period)
                        .map(|p| html::time(p.from().get()))
                        .unwrap_or_default();
                    @if bar.settled {
                        rect x=(d1(x)) y=(top) width=(d1(slot)) height=(d1(h - top - bottom))
                            fill="#dcefe3" {}
                    }
                    g class="period" data-period=(bar.period) data-flow=(bar.flow)
                        data-cumulative=(bar.cumulative) data-settled=(bar.settled) {
                        title {
                            "period " (bar.period) " from " (from) ": " (money(bar.flow, &c))
                            " added, position " (money(bar.cumulative, &c))
                            @if bar.settled { " (settled)" }
                        }
                        rect x=(d1(x + slot * 0.2)) y=(d1(y0)) width=(d1(slot * 0.6))
                            height=(d1((y1 - y0).max(if bar.flow == 0 { 0.0 } else { 1.0 })))
                            fill=(if bar.flow >= 0 { "#2f9e5b" } else { "#d0453a" })
                            opacity="0.85" {}
                    }
                    @if i % label_every == 0 {
                        // The period's number, and when it starts (its time of day for periods
                        // shorter than a day, else its date).
                        @let when = if terms.period_ms.get() < 86_400_000 {
                            from.get(11..19)
                        } else {
                            from.get(..10)
                        };
                        text x=(d1(x + slot / 2.0)) y=(h - bottom + 14.0) text-anchor="middle"
                            fill="#5b6474" {
                            (bar.period)
                            tspan x=(d1(x + slot / 2.0)) dy="13" fill="#8a93a6" {
                                (when.unwrap_or(""))
                            }
                        }
                    }
                }
                polyline points=(path.join(" ")) fill="none" stroke="#2556c4" stroke-width="2" {}
                @for (x, y) in &points {
                    circle cx=(d1(*x)) cy=(d1(*y)) r="3" fill="#2556c4" {}
                }
                text x=(left + (w - left - right) / 2.0) y=(h - 4.0) text-anchor="middle"
                    fill="#5b6474" {
                    "settlement period (each " (period_len) ") and its start, UTC"
                }
            }
            p class="muted" style="margin:6px 4px 0" {
                span style="color:#2f9e5b" { "■" } " owed to " (me.as_str()) " in the period · "
                span style="color:#d0453a" { "■" } " owed by " (me.as_str()) " · "
                span style="color:#2556c4" { "●" } " net position at the period's end · "
                span style="color:#dcefe3" { "■" } " settled by a co-signed statement"
            }
        }
    };
    markup.into()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ledger::state::{records, LineTotals};
    use ledger::types::{EntryId, LogIndex};

    pub(crate) fn agreement(period_ms: u64, settled: &[u64]) -> AgreementState {
        let terms: ledger::agreement::AgreementTerms = serde_json::from_value(serde_json::json!({
            "agreement": "agr-1",
            "brands": ["air", "coffee"],
            "directions": [{"payer": "air", "payee": "coffee"}, {"payer": "coffee", "payee": "air"}],
            "settlement_currency": "EUR",
            "fx_source": "air",
            "fee_bps": 0,
            "credit_limit_minor": 1_000_000,
            "period_ms": period_ms,
            "period_origin": 0,
            "rounding": "half_even",
            "valid_from": 0
        }))
        .unwrap();
        AgreementState {
            index: LogIndex::new(0).unwrap(),
            agreement: ledger::agreement::SignedAgreement {
                terms,
                signatures: Vec::new(),
            },
            statements: settled
                .iter()
                .map(|k| (*k, LogIndex::new(100 + k).unwrap()))
                .collect(),
        }
    }

    /// Period totals records of `agr-1`: `(period, air → coffee, coffee → air)`.
    pub(crate) fn periods(rows: &[(u64, u64, u64)]) -> records::MemorySource {
        let agr: EntryId = "agr-1".parse().unwrap();
        rows.iter()
            .map(|(k, a, c)| {
                let mut t = LineTotals::default();
                t.gross[0].obligations_minor = *a;
                t.gross[0].lines = u64::from(*a > 0);
                t.gross[1].obligations_minor = *c;
                t.gross[1].lines = u64::from(*c > 0);
                (records::period_totals_key(&agr, *k), records::encode(&t))
            })
            .collect()
    }

    #[test]
    fn bars_accumulate_the_position_per_period_from_our_side() {
        let me: BrandId = "coffee".parse().unwrap();
        let a = agreement(1000, &[0]);
        let src = periods(&[(0, 750, 0), (2, 0, 100)]);
        let b = read_bars(&src, &a, &me, LogTime::new(3500).unwrap(), 650).unwrap();
        let got: Vec<(u64, i64, i64, bool)> = b
            .iter()
            .map(|b| (b.period, b.flow, b.cumulative, b.settled))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 750, 750, true),
                (1, 0, 750, false),
                (2, -100, 650, false),
                (3, 0, 650, false)
            ]
        );
        let none = records::MemorySource::new();
        assert!(read_bars(&none, &a, &me, LogTime::new(3500).unwrap(), 0)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn bars_keep_the_latest_periods_and_carry_the_earlier_position() {
        let me: BrandId = "coffee".parse().unwrap();
        let a = agreement(10, &[]);
        let src = periods(&[(0, 7, 0), (99, 3, 0)]);
        let b = read_bars(&src, &a, &me, LogTime::new(999).unwrap(), 10).unwrap();
        assert_eq!(b.len(), CHART_PERIODS_MAX);
        assert_eq!(b[0].period, 99 - (CHART_PERIODS_MAX as u64 - 1));
        // Period 0 is off the chart, but its 7 still counts.
        assert_eq!(b[0].cumulative, 7);
        assert_eq!(b.last().unwrap().cumulative, 10);
        // A clock far past the last line: the chart ends at now's period.
        let b = read_bars(&src, &a, &me, LogTime::new(5_000).unwrap(), 10).unwrap();
        assert_eq!(b.len(), CHART_PERIODS_MAX);
        assert_eq!(b.last().unwrap().period, 500);
        assert!(b.iter().all(|x| x.flow == 0 && x.cumulative == 10));
    }
}
