//! HTML building blocks of the explorer: the [`Html`] type of safe markup, URL components,
//! formatting of points, money and log times, the page layout with its inline style sheet, and
//! pagers.
//!
//! Invariant: markup is built only with `maud::html!`, which escapes every value spliced into
//! it by its type: text (`&str`, `String`, numbers) is escaped, markup ([`Html`], `Markup`) is
//! not. So no text from the store or the request reaches a page unescaped, and no helper
//! escapes by hand; inside a URL, text goes through [`url_component`] first.

use std::fmt::{self, Write};
use std::ops::Deref;

use maud::{html, Markup, PreEscaped, Render};

/// Safe markup, as `maud::html!` built it: spliced into a template as is, never escaped again.
/// It reads as the `&str` of its markup (for tests and responses).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Html(String);

impl Html {
    /// The markup as a string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl From<Markup> for Html {
    fn from(m: Markup) -> Html {
        Html(m.into_string())
    }
}

impl Render for Html {
    fn render_to(&self, buffer: &mut String) {
        buffer.push_str(&self.0);
    }
}

impl Deref for Html {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<&str> for Html {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for Html {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Percent-encodes text for one URL path segment or query value: every byte but the RFC 3986
/// unreserved characters (`A-Z a-z 0-9 - . _ ~`) becomes `%XX`.
pub fn url_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A query string `?k=v&...` of the pairs whose value is present, percent-encoded; empty when
/// there are none.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if let Some(v) = v {
            out.push(if out.is_empty() { '?' } else { '&' });
            out.push_str(k);
            out.push('=');
            out.push_str(&url_component(v));
        }
    }
    out
}

/// `<a href="..">text</a>`, both escaped.
pub fn link(href: &str, text: &str) -> Html {
    html! { a href=(href) { (text) } }.into()
}

/// A whole number with thousands separated by commas: `1234567` → `1,234,567`.
pub fn int(n: impl Into<i128>) -> String {
    let n: i128 = n.into();
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('−');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// An amount of minor units as a decimal amount of the currency: `(123456, 2, "EUR")` →
/// `1,234.56 EUR`; negative amounts get a minus sign.
pub fn money(minor: i64, minor_unit: u8, code: &str) -> String {
    let scale = 10_u64.pow(u32::from(minor_unit));
    let abs = minor.unsigned_abs();
    let whole = int(i128::from(abs / scale));
    let sign = if minor < 0 { "−" } else { "" };
    if minor_unit == 0 {
        format!("{sign}{whole} {code}")
    } else {
        let frac = abs % scale;
        format!(
            "{sign}{whole}.{frac:0width$} {code}",
            width = usize::from(minor_unit)
        )
    }
}

/// A log time (ms since the Unix epoch) as `YYYY-MM-DD HH:MM:SS.mmm UTC`.
pub fn time(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03} UTC",
        s / 3600,
        s / 60 % 60,
        s % 60,
        ms % 1000
    )
}

/// A log time to the second, for prose: `YYYY-MM-DD HH:MM:SS UTC`.
pub fn time_s(ms: u64) -> String {
    let t = time(ms);
    format!("{} UTC", &t[..19])
}

/// A log time as a table cell: the date and time to the ms, without wrapping; the column
/// header says the zone (UTC).
pub fn time_cell(ms: u64) -> Html {
    let t = time(ms);
    html! { td class="time" { (&t[..23]) } }.into()
}

/// A duration in ms, in the largest whole unit that fits: `86400000` → `1 d`, `1500` →
/// `1,500 ms`.
pub fn duration(ms: u64) -> String {
    for (unit, len) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("min", 60_000),
        ("s", 1000),
    ] {
        if ms >= len && ms % len == 0 {
            return format!("{} {unit}", int(ms / len));
        }
    }
    format!("{} ms", int(ms))
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The explorer's sections, for the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Home,
    Log,
    Checkpoints,
    Partners,
    Members,
    Holds,
    Settlement,
    None,
}

const SECTIONS: [(Section, &str, &str); 7] = [
    (Section::Home, "/explorer", "Overview"),
    (Section::Log, "/explorer/log", "Log"),
    (Section::Checkpoints, "/explorer/checkpoints", "Checkpoints"),
    (Section::Partners, "/explorer/partners", "Partners"),
    (Section::Members, "/explorer/members", "Members"),
    (Section::Holds, "/explorer/holds", "Open holds"),
    (Section::Settlement, "/explorer/settlement", "Settlement"),
];

/// The style sheet, inline in every page (no external assets).
const CSS: &str = r#"
:root{--fg:#1d2330;--muted:#5b6474;--line:#dfe3ea;--bg:#f6f7f9;--card:#fff;--accent:#2556c4;
--ok:#1a7f43;--okbg:#e5f5eb;--bad:#b42318;--badbg:#fdecea;--warn:#8a5a00;--warnbg:#fff4d6}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:var(--fg);background:var(--bg)}
header{background:#172036;color:#fff;padding:0 24px;display:flex;align-items:center;gap:28px;flex-wrap:wrap}
header .brand{font-weight:700;font-size:17px;padding:14px 0;white-space:nowrap}
header .brand span{font-weight:400;color:#aab4c8;margin-left:6px}
nav{display:flex;gap:2px;flex-wrap:wrap}
nav a{color:#d5dbea;text-decoration:none;padding:16px 11px;border-bottom:3px solid transparent}
nav a:hover{color:#fff}
nav a.active{color:#fff;border-bottom-color:#6d9cff}
main{max-width:1240px;margin:0 auto;padding:22px 24px 40px}
h1{font-size:23px;margin:4px 0 4px}
h2{font-size:17px;margin:28px 0 10px}
p.lead{color:var(--muted);margin:0 0 18px}
a{color:var(--accent)}
table{border-collapse:collapse;width:100%;background:var(--card);border:1px solid var(--line);
border-radius:8px;overflow:hidden;font-size:14px}
th,td{text-align:left;padding:7px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:#eef1f6;font-weight:600;color:#394357;white-space:nowrap}
tr:last-child td{border-bottom:none}
tbody tr:nth-child(even) td{background:#fafbfc}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.time{white-space:nowrap;color:var(--muted);font-variant-numeric:tabular-nums}
td.id{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px;min-width:170px;max-width:240px;word-break:break-all}
table.compact{width:auto;min-width:420px}
.mono,code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
.hash{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px;word-break:break-all}
pre{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px;
white-space:pre-wrap;word-break:break-all;margin:0}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12.5px;font-weight:600;white-space:nowrap}
.ok{background:var(--okbg);color:var(--ok)}
.bad{background:var(--badbg);color:var(--bad)}
.warn{background:var(--warnbg);color:var(--warn)}
.type{background:#e8eefc;color:#23408f}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:12px;margin:12px 0 8px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px}
.card .label{color:var(--muted);font-size:12.5px;text-transform:uppercase;letter-spacing:.04em}
.card .value{font-size:21px;font-weight:650;margin-top:2px;font-variant-numeric:tabular-nums;word-break:break-word}
.card .value.pos{color:var(--ok)}.card .value.neg{color:var(--bad)}
dl.fields{display:grid;grid-template-columns:max-content 1fr;gap:0;background:var(--card);
border:1px solid var(--line);border-radius:8px;margin:0;overflow:hidden}
dl.fields dt{padding:7px 14px;color:var(--muted);border-bottom:1px solid var(--line);background:#f8f9fb}
dl.fields dd{margin:0;padding:7px 14px;border-bottom:1px solid var(--line);word-break:break-word}
dl.fields dt:last-of-type,dl.fields dd:last-of-type{border-bottom:none}
dl.fields dl.fields{margin:2px 0}
form.filters{display:flex;gap:10px;align-items:end;flex-wrap:wrap;margin:6px 0 14px;background:var(--card);
border:1px solid var(--line);border-radius:8px;padding:10px 12px}
form.filters label{display:flex;flex-direction:column;font-size:12.5px;color:var(--muted);gap:3px}
input,select{font:inherit;padding:5px 8px;border:1px solid #c5ccd8;border-radius:6px;background:#fff;min-width:170px}
button{font:inherit;padding:6px 14px;border:0;border-radius:6px;background:var(--accent);color:#fff;cursor:pointer}
.pager{display:flex;gap:16px;margin:12px 0;align-items:center;color:var(--muted)}
.muted{color:var(--muted)}
.chart{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:8px}
.chart svg{display:block;width:100%;height:auto}
footer{max-width:1240px;margin:0 auto;padding:0 24px 28px;color:var(--muted);font-size:13px}
"#;

/// The identity shown on every page.
pub struct Chrome<'a> {
    pub brand: &'a str,
    pub origin: &'a str,
    pub size: u64,
}

/// A whole page: the layout around `body` (the markup of an [`Html`]), with `data-page` on
/// `main`.
pub fn layout(chrome: &Chrome<'_>, section: Section, page: &str, title: &str, body: &str) -> Html {
    let markup = html! {
        (PreEscaped("<!doctype html>\n"))
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (chrome.brand) " ledger explorer" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    div class="brand" { (chrome.brand) span { "ledger explorer" } }
                    nav {
                        @for (s, href, label) in SECTIONS {
                            a href=(href) class=[(s == section).then_some("active")] { (label) }
                        }
                    }
                }
                main id="page" data-page=(page) { (PreEscaped(body)) }
                footer {
                    "Read-only view of log " span class="mono" { (chrome.origin) }
                    " at checkpoint size "
                    span id="log-size" data-size=(chrome.size) { (int(chrome.size)) }
                    ". Member ids are the brand's pseudonyms; the log itself is public ("
                    a href="/checkpoint" { "/checkpoint" } ", "
                    a href="/v1/openapi.json" { "API" } ")."
                }
            }
        }
        "\n"
    };
    markup.into()
}

/// A summary card: a label and its value element (`div class="value"` with the value's `id`
/// and data attributes), as [`card_value`] or the caller builds it.
pub fn card(label: &str, value: Markup) -> Html {
    html! { div class="card" { div class="label" { (label) } (value) } }.into()
}

/// The plain value element of a [`card`]: `<div class="value">text</div>`.
pub fn card_value(text: &str) -> Markup {
    html! { div class="value" { (text) } }
}

/// A pager: links (label, URL) where present, greyed labels where not.
pub fn pager(links: &[(&str, Option<String>)]) -> Html {
    html! {
        div class="pager" {
            @for (label, href) in links {
                @match href {
                    Some(h) => a class="pager-link" href=(h) { (label) },
                    None => span { (label) },
                }
            }
        }
    }
    .into()
}

/// A status badge: `class` is `ok`, `bad`, `warn` or `type`.
pub fn badge(class: &str, text: &str) -> Html {
    html! { span class={ "badge " (class) } { (text) } }.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_wherever_a_helper_puts_it() {
        // maud escapes `&`, `<`, `>` and `"` (every attribute is double-quoted); `'` needs none.
        assert_eq!(
            badge("type", r#"<script>alert("x") & 'y'</script>"#),
            "<span class=\"badge type\">&lt;script&gt;alert(&quot;x&quot;) &amp; 'y'&lt;/script&gt;</span>"
        );
        assert_eq!(
            pager(&[("a&b", Some("/x?a=1&b=\"2\"".into())), ("<c>", None)]),
            "<div class=\"pager\"><a class=\"pager-link\" href=\"/x?a=1&amp;b=&quot;2&quot;\">a&amp;b</a>\
             <span>&lt;c&gt;</span></div>"
        );
        assert_eq!(
            badge("ok", "ünïcödé €"),
            "<span class=\"badge ok\">ünïcödé €</span>"
        );
        assert_eq!(
            badge("ok", "&amp;"),
            "<span class=\"badge ok\">&amp;amp;</span>"
        );
    }

    #[test]
    fn links_escape_both_href_and_text() {
        assert_eq!(
            link("/x?a=1&b=\"2\"", "<b>"),
            "<a href=\"/x?a=1&amp;b=&quot;2&quot;\">&lt;b&gt;</a>"
        );
    }

    #[test]
    fn url_components_keep_only_unreserved_characters() {
        assert_eq!(url_component("alice-1_2.3~"), "alice-1_2.3~");
        assert_eq!(url_component("a:b"), "a%3Ab");
        assert_eq!(url_component("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(
            query(&[
                ("member", Some("a:b".into())),
                ("type", None),
                ("before", Some("7".into()))
            ]),
            "?member=a%3Ab&before=7"
        );
        assert_eq!(query(&[("type", None)]), "");
    }

    #[test]
    fn numbers_money_and_times_are_formatted() {
        assert_eq!(int(0_u64), "0");
        assert_eq!(int(999_u64), "999");
        assert_eq!(int(1000_u64), "1,000");
        assert_eq!(int(1_234_567_u64), "1,234,567");
        assert_eq!(int(-1_234_i64), "−1,234");
        assert_eq!(money(123_456, 2, "EUR"), "1,234.56 EUR");
        assert_eq!(money(-5, 2, "EUR"), "−0.05 EUR");
        assert_eq!(money(1000, 0, "JPY"), "1,000 JPY");
        assert_eq!(money(1, 3, "BHD"), "0.001 BHD");
        assert_eq!(time(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(time(951_782_400_123), "2000-02-29 00:00:00.123 UTC");
        assert_eq!(time(1_795_435_509_007), "2026-11-23 12:05:09.007 UTC");
        assert_eq!(time_s(1_795_435_509_007), "2026-11-23 12:05:09 UTC");
        assert_eq!(
            time_cell(1_795_435_509_007),
            "<td class=\"time\">2026-11-23 12:05:09.007</td>"
        );
        assert_eq!(duration(86_400_000), "1 d");
        assert_eq!(duration(6_000), "6 s");
        assert_eq!(duration(1_500), "1,500 ms");
    }

    #[test]
    fn the_layout_escapes_titles_and_marks_the_section() {
        let chrome = Chrome {
            brand: "b<1>",
            origin: "o&o",
            size: 1234,
        };
        let page = layout(&chrome, Section::Log, "log", "t\"", "<p>body</p>");
        assert!(page.contains("<title>t&quot; · b&lt;1&gt; ledger explorer</title>"));
        assert!(page.contains("<a href=\"/explorer/log\" class=\"active\">Log</a>"));
        assert!(page.contains("o&amp;o"));
        assert!(page.contains("<p>body</p>"));
        assert!(page.contains("data-size=\"1234\">1,234<"));
        assert!(!page.contains("<script"));
    }
}
