//! The explorer: server-rendered, read-only HTML pages of the node's log, checkpoints and
//! cosignatures, partners, members, open holds and settlement positions, under `/explorer`.
//! Public like the log itself (no API key); no build step, no external assets, no JavaScript:
//! inline CSS and inline SVG only.
//!
//! Code map: [`html`](mod@html) (escaping, formatting, layout); `scan` (bounded pagination of the log);
//! `log` (overview, log, entry pages, the inclusion proof status of every entry shown);
//! `federation` (checkpoints, partners); `members` (members, open holds); `settlement`
//! (positions, statements) and `chart` (the settlement chart, inline SVG).
//!
//! Invariants:
//! - pages read committed data with the JSON read routes' own helpers (`reads`, `log_routes`,
//!   `federation::{routes, reconcile, settle, witness}`) and never enter the sequencer;
//! - a page is rendered against one snapshot of the latest signed checkpoint (`Ctx`): no
//!   entry above it is shown, and each entry's inclusion proof is computed against it and
//!   verified with `ledger::receipt::Receipt::verify` before the page says "verified";
//! - every page is bounded: at most [`PAGE_ROWS_MAX`] rows and [`SCAN_MAX`] records examined
//!   per request, at most [`RENDERS_MAX`] pages rendered at once (a request waits at most
//!   [`RENDER_WAIT`], then gets 503);
//! - every page is built with `maud::html!`, which escapes every text from the store or the
//!   request by its type ([`html`](mod@html)); no markup is written by hand into a string.

mod chart;
mod federation;
pub mod html;
mod log;
mod members;
mod scan;
mod settlement;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::Semaphore;

use ledger::checkpoint::NoteVerifier;
use ledger::entry::Entry;
use ledger::merkle::{leaf_hash, Hash};
use ledger::types::BrandId;
use ledger_store::log::receipt_from_store;

use crate::api::App;
use crate::problem::ApiError;
use crate::sequencer::CheckpointInfo;
use html::{Html, Section};
use maud::html;

/// Most rows one page lists.
pub const PAGE_ROWS_MAX: usize = 50;
/// Most records (entries, history items, state records) one request examines to fill a page.
pub const SCAN_MAX: usize = 10_000;
/// Most pages rendered at the same time (each holds a blocking thread).
pub const RENDERS_MAX: usize = 2;
/// How long a request waits for a render slot before it is answered 503.
pub const RENDER_WAIT: Duration = Duration::from_secs(5);

static RENDERS: Semaphore = Semaphore::const_new(RENDERS_MAX);

/// The explorer's routes, to be merged into the node's router.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/explorer", get(log::home))
        .route("/explorer/", get(log::home))
        .route("/explorer/log", get(log::log))
        .route("/explorer/entries/{index}", get(log::entry))
        .route("/explorer/checkpoints", get(federation::checkpoints))
        .route("/explorer/partners", get(federation::partners))
        .route("/explorer/partners/{brand}", get(federation::partner))
        .route("/explorer/members", get(members::members))
        .route("/explorer/members/{member}", get(members::member))
        .route("/explorer/holds", get(members::holds))
        .route("/explorer/settlement", get(settlement::overview))
        .route("/explorer/settlement/{partner}", get(settlement::partner))
        .route("/explorer/{*rest}", get(unknown_page))
}

/// A rendered page body and where it belongs.
pub(crate) struct Page {
    pub section: Section,
    /// The `data-page` name of `main`, for tests.
    pub name: &'static str,
    pub title: String,
    pub body: Html,
}

/// A page that could not be shown: its status and what to say.
#[derive(Debug)]
pub(crate) struct PageError {
    pub status: StatusCode,
    pub detail: String,
}

impl PageError {
    pub fn not_found(detail: impl Into<String>) -> PageError {
        PageError {
            status: StatusCode::NOT_FOUND,
            detail: detail.into(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> PageError {
        PageError {
            status: StatusCode::BAD_REQUEST,
            detail: detail.into(),
        }
    }
}

impl From<crate::redemption_error::RedemptionError> for PageError {
    fn from(e: crate::redemption_error::RedemptionError) -> PageError {
        ApiError::from(e).into()
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        PageError {
            status: e.status,
            // `ApiError::internal` already logged the cause and says only "internal error".
            detail: e.detail,
        }
    }
}

/// What a page is rendered against: the latest signed checkpoint, taken once per request.
pub(crate) struct Ctx {
    pub checkpoint: Arc<CheckpointInfo>,
    pub verifier: NoteVerifier,
    pub brand: BrandId,
}

/// Renders a page with `f` on a blocking thread (RocksDB reads), within the render limit, and
/// answers it as HTML; errors become HTML error pages with their status.
pub(crate) async fn serve<F>(app: Arc<App>, f: F) -> Response
where
    F: FnOnce(&App, &Ctx) -> Result<Page, PageError> + Send + 'static,
{
    let checkpoint = app.shared.checkpoint();
    let ctx = match NoteVerifier::parse(&app.verifier_key) {
        Ok(verifier) => Ctx {
            checkpoint,
            verifier,
            brand: app.federation.brand.clone(),
        },
        Err(e) => return error_page(&app, None, ApiError::internal(e).into()),
    };
    let permit = match tokio::time::timeout(RENDER_WAIT, RENDERS.acquire()).await {
        Ok(Ok(p)) => p,
        _ => {
            let mut r = error_page(
                &app,
                Some(&ctx),
                PageError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    detail: "the explorer is busy; retry in a moment".into(),
                },
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
    };
    let worker = app.clone();
    let done = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let page = f(&worker, &ctx);
        (page, ctx)
    })
    .await;
    match done {
        Ok((Ok(page), ctx)) => html_response(
            StatusCode::OK,
            html::layout(
                &chrome(&app, &ctx),
                page.section,
                page.name,
                &page.title,
                &page.body,
            ),
        ),
        Ok((Err(e), ctx)) => error_page(&app, Some(&ctx), e),
        Err(e) => error_page(&app, None, ApiError::internal(e).into()),
    }
}

fn chrome<'a>(app: &'a App, ctx: &Ctx) -> html::Chrome<'a> {
    html::Chrome {
        brand: app.config.brand.as_str(),
        origin: &app.config.origin,
        size: ctx.checkpoint.size,
    }
}

fn html_response(status: StatusCode, body: Html) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // Inline style and inline SVG only: nothing is loaded, nothing runs.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                 form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            ),
        ],
        body.into_string(),
    )
        .into_response()
}

fn error_page(app: &App, ctx: Option<&Ctx>, e: PageError) -> Response {
    let title = match e.status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::BAD_REQUEST => "Bad request",
        StatusCode::SERVICE_UNAVAILABLE => "Busy",
        s if s.is_client_error() => "Refused",
        _ => "Error",
    };
    let body: Html = html! {
        h1 id="error" data-status=(e.status.as_u16()) { (title) }
        p class="lead" { (sentence(&e.detail)) }
        p { a href="/explorer" { "Back to the overview" } }
    }
    .into();
    let size = ctx.map_or_else(|| app.shared.checkpoint().size, |c| c.checkpoint.size);
    let chrome = html::Chrome {
        brand: app.config.brand.as_str(),
        origin: &app.config.origin,
        size,
    };
    html_response(
        e.status,
        html::layout(&chrome, Section::None, "error", title, &body),
    )
}

/// `detail` with its first letter in upper case (problem details start in lower case).
fn sentence(detail: &str) -> String {
    let mut c = detail.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

async fn unknown_page(axum::extract::State(app): crate::api::AppState) -> Response {
    error_page(
        &app,
        None,
        PageError::not_found("there is no such explorer page"),
    )
}

/// Query parameters; an empty value (as an empty form field sends) counts as absent.
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    pub fn from_query(
        q: Result<Query<HashMap<String, String>>, QueryRejection>,
    ) -> Result<Params, PageError> {
        q.map(|Query(m)| Params(m))
            .map_err(|e| PageError::bad_request(format!("bad query string: {e}")))
    }

    /// The value of `key`, if present and not empty.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    /// `key` parsed as `T`, if present; a bad value is a 400 naming the parameter.
    pub fn parse<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, PageError>
    where
        T::Err: std::fmt::Display,
    {
        self.text(key)
            .map(|s| {
                s.parse::<T>()
                    .map_err(|e| PageError::bad_request(format!("{key}: {e}")))
            })
            .transpose()
    }
}

/// Parses a path segment as `T`, or answers 404 (a path that names nothing).
pub(crate) fn path_param<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, PageError>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e: T::Err| PageError::not_found(format!("{s:?} is not a {what}: {e}")))
}

/// Whether an entry's inclusion proof verified against the page's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Proof {
    /// Verified in the checkpoint of this size.
    Verified { size: u64 },
    /// Why it did not verify.
    Failed(String),
}

impl Proof {
    /// A badge saying so, with `data-proof` and `data-proof-size` for tests.
    pub fn badge(&self) -> Html {
        match self {
            Proof::Verified { size } => html! {
                span class="badge ok proof" data-proof="verified" data-proof-size=(size)
                    title="inclusion proof verified against the signed checkpoint" {
                    "verified in checkpoint size " (html::int(*size))
                }
            },
            Proof::Failed(why) => html! {
                span class="badge bad proof" data-proof="failed" { "proof failed: " (why) }
            },
        }
        .into()
    }
}

/// One entry of the log as the explorer shows it.
pub(crate) struct Row {
    pub index: u64,
    /// The canonical bytes, as text.
    pub text: String,
    /// The decoded entry, or why it does not decode.
    pub entry: Result<Entry, String>,
    pub leaf_hash: Hash,
    /// The inclusion proof against the page's checkpoint, hex hashes.
    pub proof_hashes: Vec<String>,
    pub proof: Proof,
}

/// Entry `index` with its inclusion proof against the page's checkpoint, verified as a client
/// verifies a receipt (the checkpoint's signature by the node's key, the canonical entry, the
/// proof up to the signed root).
pub(crate) fn load_row(app: &App, ctx: &Ctx, index: u64) -> Result<Row, PageError> {
    let cp = &ctx.checkpoint;
    if index >= cp.size {
        return Err(PageError::not_found(format!(
            "no entry {index}: the latest signed checkpoint covers {} entries",
            cp.size
        )));
    }
    let receipt =
        receipt_from_store(&app.store, index, cp.size, &cp.note).map_err(ApiError::internal)?;
    let proof = match receipt.verify(&ctx.verifier) {
        Ok(v) => Proof::Verified {
            size: v.checkpoint.size,
        },
        Err(e) => Proof::Failed(e.to_string()),
    };
    let entry = Entry::from_bytes(receipt.entry.as_bytes()).map_err(|e| e.to_string());
    Ok(Row {
        index,
        leaf_hash: leaf_hash(receipt.entry.as_bytes()),
        text: receipt.entry,
        entry,
        proof_hashes: receipt.inclusion_proof,
        proof,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn empty_parameters_count_as_absent_and_bad_ones_are_400() {
        let p = params(&[
            ("member", ""),
            ("type", "  "),
            ("before", "12"),
            ("after", "x"),
        ]);
        assert_eq!(p.text("member"), None);
        assert_eq!(p.text("type"), None);
        assert_eq!(p.parse::<u64>("before").unwrap(), Some(12));
        assert_eq!(p.parse::<u64>("missing").unwrap(), None);
        let e = p.parse::<u64>("after").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.detail.starts_with("after: "), "{}", e.detail);
    }

    #[test]
    fn a_path_that_names_nothing_is_404() {
        let e = path_param::<u64>("log index", "abc").unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let e = path_param::<ledger::types::MemberId>("member id", "a b").unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert_eq!(path_param::<u64>("log index", "7").unwrap(), 7);
    }

    #[test]
    fn error_details_read_as_sentences() {
        assert_eq!(sentence("no entry 7"), "No entry 7");
        assert_eq!(sentence("Ünknown"), "Ünknown");
        assert_eq!(sentence(""), "");
    }

    #[test]
    fn proof_badges_carry_their_status() {
        let ok = Proof::Verified { size: 1200 }.badge();
        assert!(ok.contains("data-proof=\"verified\""));
        assert!(ok.contains("data-proof-size=\"1200\""));
        assert!(ok.contains("verified in checkpoint size 1,200"));
        let bad = Proof::Failed("<root> mismatch".into()).badge();
        assert!(bad.contains("data-proof=\"failed\""));
        assert!(bad.contains("&lt;root&gt; mismatch"));
    }
}
