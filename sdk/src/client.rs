//! The typed async client of a brand node's HTTP API (spec/api.md).
//!
//! Invariants:
//! - every route of spec/api.md has one method; bodies are typed ([`crate::types`]);
//! - a write is sent only if its request is valid by the ledger's own rules (ids, amounts,
//!   reasons, tier policies), and returns only once its receipt was checked against the
//!   request (and against the pinned log key, when one is pinned);
//! - only retryable failures are retried, within the [`RetryPolicy`]'s bounds;
//! - no answer body larger than [`RESPONSE_BYTES_MAX`] is read.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, Stream, StreamExt, TryStreamExt};
use ledger::checkpoint::{open_checkpoint, Checkpoint, NoteVerifier};
use ledger::entry::EntryKind;
use ledger::receipt::Receipt;
use ledger::types::{EntryId, MemberId};
use rand_core::{OsRng, RngCore};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, ErrorCode, VerificationError};
use crate::id::check_not_reserved;
use crate::receipt::{check_receipt, WriteResult};
use crate::retry::{parse_retry_after, AttemptFailure, RetryPolicy};
use crate::types::*;

mod federation;

/// Largest answer body the client reads, in bytes (a full page of log entries fits).
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Default time limit of one attempt (connect, send, wait for the answer, read it).
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Default time limit for establishing a connection.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Most history entries [`Client::history_all`] collects before giving up.
pub const HISTORY_ALL_ITEMS_MAX: usize = 1_000_000;

/// A client of one brand node. Cheap to clone (clones share one connection pool).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
    verifier: Option<NoteVerifier>,
    retry: RetryPolicy,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the API key.
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url)
            .field("api_key", &self.inner.api_key.as_ref().map(|_| "<set>"))
            .field(
                "verifier",
                &self.inner.verifier.as_ref().map(|v| v.to_string()),
            )
            .field("retry", &self.inner.retry)
            .finish()
    }
}

/// Builds a [`Client`] with non-default settings.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base_url: String,
    api_key: Option<String>,
    timeout: Duration,
    connect_timeout: Duration,
    retry: RetryPolicy,
    verifier: Option<NoteVerifier>,
}

impl ClientBuilder {
    /// Sends `Authorization: Bearer <key>` with every request.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The time limit of one attempt (default [`TIMEOUT_DEFAULT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The time limit for connecting (default [`CONNECT_TIMEOUT_DEFAULT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How failed calls are retried (default [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Pins the log's verifier key: every write's receipt, every fetched receipt and every
    /// checkpoint read through [`Client::verified_checkpoint`] must verify against it.
    pub fn verifier(mut self, key: NoteVerifier) -> Self {
        self.verifier = Some(key);
        self
    }

    /// Builds the client. Fails on a base URL that is not `http(s)://...` or an API key that
    /// cannot be sent in a header.
    pub fn build(self) -> Result<Client, Error> {
        let url = reqwest::Url::parse(&self.base_url)
            .map_err(|e| Error::Invalid(format!("base URL {:?}: {e}", self.base_url)))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(Error::Invalid(format!(
                "base URL {:?} is not an http(s) URL",
                self.base_url
            )));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Error::Invalid(format!(
                "base URL {:?} must not have a query or fragment",
                self.base_url
            )));
        }
        if let Some(k) = &self.api_key {
            HeaderValue::from_str(&format!("Bearer {k}")).map_err(|_| {
                Error::Invalid("the API key has characters a header cannot carry".into())
            })?;
        }
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(concat!("loyalty-sdk/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::Transport)?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base_url: url.as_str().trim_end_matches('/').to_owned(),
                api_key: self.api_key,
                verifier: self.verifier,
                retry: self.retry,
            }),
        })
    }
}

/// One request, kept so it can be sent again.
struct Call<'a> {
    method: Method,
    path: String,
    query: Vec<(&'a str, String)>,
    body: Option<Vec<u8>>,
    /// Non-success statuses that are answers, not errors (e.g. 503 for `/readyz`).
    accept: &'a [u16],
    retry: bool,
}

impl<'a> Call<'a> {
    fn new(method: Method, path: impl Into<String>) -> Self {
        Call {
            method,
            path: path.into(),
            query: Vec::new(),
            body: None,
            accept: &[],
            retry: true,
        }
    }

    fn get(path: impl Into<String>) -> Self {
        Call::new(Method::GET, path)
    }

    fn query(mut self, name: &'a str, value: impl ToString) -> Self {
        self.query.push((name, value.to_string()));
        self
    }

    fn json<T: Serialize>(mut self, body: &T) -> Result<Self, Error> {
        self.body =
            Some(serde_json::to_vec(body).map_err(|e| Error::Invalid(format!("body: {e}")))?);
        Ok(self)
    }
}

/// A successful (or accepted) answer.
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

/// Percent-encodes one path segment (ids are URL-safe already; this guards the rest).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn check_limit(limit: Option<u32>) -> Result<(), Error> {
    match limit {
        Some(l) if l == 0 || l > PAGE_LIMIT_MAX => Err(Error::Invalid(format!(
            "limit must be 1 to {PAGE_LIMIT_MAX}, not {l}"
        ))),
        _ => Ok(()),
    }
}

impl Client {
    /// A client of the node at `base_url` (for example `http://127.0.0.1:7700`), with the
    /// default timeouts and retry policy and no pinned log key.
    pub fn new(base_url: &str, api_key: Option<String>) -> Result<Client, Error> {
        let mut b = Client::builder(base_url);
        if let Some(k) = api_key {
            b = b.api_key(k);
        }
        b.build()
    }

    /// A builder for a client of the node at `base_url`.
    pub fn builder(base_url: &str) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.to_owned(),
            api_key: None,
            timeout: TIMEOUT_DEFAULT,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            retry: RetryPolicy::default(),
            verifier: None,
        }
    }

    /// The node's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The pinned log key, if any.
    pub fn verifier(&self) -> Option<&NoteVerifier> {
        self.inner.verifier.as_ref()
    }

    async fn attempt(&self, call: &Call<'_>) -> Result<Answer, (Error, AttemptFailure)> {
        let url = format!("{}{}", self.inner.base_url, call.path);
        let mut req = self.inner.http.request(call.method.clone(), &url);
        if !call.query.is_empty() {
            req = req.query(&call.query);
        }
        if let Some(k) = &self.inner.api_key {
            req = req.header(AUTHORIZATION, format!("Bearer {k}"));
        }
        if let Some(b) = &call.body {
            req = req.header(CONTENT_TYPE, "application/json").body(b.clone());
        }
        let transport = |e: reqwest::Error| {
            let f = AttemptFailure::of_transport(&e);
            (Error::Transport(e), f)
        };
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let retry_after = parse_retry_after(
            resp.headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
        );
        if let Some(len) = resp.content_length() {
            if len > RESPONSE_BYTES_MAX as u64 {
                let e = Error::Decode(format!(
                    "answer of {len} bytes exceeds {RESPONSE_BYTES_MAX}"
                ));
                return Err((e, AttemptFailure::Other));
            }
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > RESPONSE_BYTES_MAX {
                let e = Error::Decode(format!("answer exceeds {RESPONSE_BYTES_MAX} bytes"));
                return Err((e, AttemptFailure::Other));
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() || call.accept.contains(&status.as_u16()) {
            return Ok(Answer { status, body });
        }
        let failure = AttemptFailure::Status {
            status: status.as_u16(),
            retry_after,
        };
        Err((Error::from_problem(status.as_u16(), &body), failure))
    }

    /// Sends `call`, retrying as the policy allows.
    async fn send(&self, call: Call<'_>) -> Result<Answer, Error> {
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (error, failure) = match self.attempt(&call).await {
                Ok(answer) => return Ok(answer),
                Err(e) => e,
            };
            if !call.retry {
                return Err(error);
            }
            let jitter = (OsRng.next_u32() as f64) / (u32::MAX as f64 + 1.0);
            match self
                .inner
                .retry
                .next_delay(attempts, &failure, started.elapsed(), jitter)
            {
                Some(delay) => tokio::time::sleep(delay).await,
                None => return Err(error),
            }
        }
    }

    async fn json<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, Error> {
        let what = format!("{} {}", call.method, call.path);
        let answer = self.send(call).await?;
        serde_json::from_slice(&answer.body).map_err(|e| Error::Decode(format!("{what}: {e}")))
    }

    async fn text(&self, call: Call<'_>) -> Result<String, Error> {
        let what = format!("{} {}", call.method, call.path);
        let answer = self.send(call).await?;
        String::from_utf8(answer.body).map_err(|_| Error::Decode(format!("{what}: not UTF-8")))
    }

    /// Sends a write and checks its receipt against the request.
    async fn write<B: Serialize>(
        &self,
        method: Method,
        path: String,
        body: &B,
        id: &EntryId,
        kind: EntryKind,
    ) -> Result<WriteResult, Error> {
        check_not_reserved(id).map_err(|e| Error::Invalid(e.to_string()))?;
        kind.validate().map_err(|e| Error::Invalid(e.to_string()))?;
        let resp: WriteResponse = self.json(Call::new(method, path).json(body)?).await?;
        let (entry, checkpoint) =
            check_receipt(&resp.receipt, self.inner.verifier.as_ref(), id, &kind)?;
        Ok(WriteResult {
            status: resp.status,
            index: resp.receipt.index,
            entry,
            receipt: resp.receipt,
            checkpoint,
        })
    }

    // ---- Writes -------------------------------------------------------------------------

    /// `POST /v1/members/{member}/earn` (scope `earn`): credits points in a new lot.
    pub async fn earn(&self, member: &MemberId, req: &EarnRequest) -> Result<WriteResult, Error> {
        let path = format!("/v1/members/{}/earn", segment(member.as_str()));
        self.write(Method::POST, path, req, &req.id, req.entry_kind(member))
            .await
    }

    /// `POST /v1/earns` (scope `earn`): the batch path, up to 500 earns in one request and
    /// one synced commit at the node. Each earn is logged or refused on its own; with a
    /// pinned log key the covering checkpoint is verified and every logged index checked to
    /// lie inside it. Receipts are not part of the answer: fetch one with
    /// [`Client::entry_receipt`].
    pub async fn earn_many(&self, earns: &[EarnItem]) -> Result<EarnsResult, Error> {
        for e in earns {
            check_not_reserved(&e.id).map_err(|x| Error::Invalid(x.to_string()))?;
            e.entry_kind()
                .validate()
                .map_err(|x| Error::Invalid(x.to_string()))?;
        }
        let body = EarnsBody {
            earns: earns.to_vec(),
        };
        let a: EarnsResponse = self
            .json(Call::new(Method::POST, "/v1/earns").json(&body)?)
            .await?;
        let mismatch = |field: &'static str, expected: String, got: String| {
            Error::from(VerificationError::Mismatch {
                field,
                expected,
                got,
            })
        };
        if a.results.len() != earns.len() {
            return Err(mismatch(
                "results",
                earns.len().to_string(),
                a.results.len().to_string(),
            ));
        }
        if let Some(v) = &self.inner.verifier {
            let (cp, _) = open_checkpoint(&a.checkpoint, v).map_err(VerificationError::from)?;
            if cp.size != a.size {
                return Err(mismatch("size", cp.size.to_string(), a.size.to_string()));
            }
        }
        let mut results = Vec::with_capacity(a.results.len());
        for o in a.results {
            let logged = |status| match o.index {
                Some(index) if index < a.size => Ok(EarnOutcome::Logged { status, index }),
                other => Err(mismatch(
                    "index",
                    format!("an index below {}", a.size),
                    format!("{other:?}"),
                )),
            };
            results.push(match o.status {
                EarnStatus::Appended => logged(WriteStatus::Appended)?,
                EarnStatus::Existing => logged(WriteStatus::Existing)?,
                EarnStatus::Refused | EarnStatus::Failed | EarnStatus::Unknown => {
                    let p = o.problem.unwrap_or_default();
                    EarnOutcome::Refused {
                        status: p["status"].as_u64().unwrap_or(0) as u16,
                        code: ErrorCode::parse(p["code"].as_str().unwrap_or("")),
                        detail: p["detail"].as_str().unwrap_or("").to_owned(),
                    }
                }
            });
        }
        Ok(EarnsResult {
            checkpoint: a.checkpoint,
            size: a.size,
            results,
        })
    }

    /// `POST /v1/members/{member}/redeem` (scope `redeem`): spends points.
    pub async fn redeem(
        &self,
        member: &MemberId,
        req: &RedeemRequest,
    ) -> Result<WriteResult, Error> {
        let path = format!("/v1/members/{}/redeem", segment(member.as_str()));
        self.write(Method::POST, path, req, &req.id, req.entry_kind(member))
            .await
    }

    /// `POST /v1/members/{member}/adjust` (scope `admin`): an operator's correction.
    pub async fn adjust(
        &self,
        member: &MemberId,
        req: &AdjustRequest,
    ) -> Result<WriteResult, Error> {
        let path = format!("/v1/members/{}/adjust", segment(member.as_str()));
        self.write(Method::POST, path, req, &req.id, req.entry_kind(member))
            .await
    }

    /// `POST /v1/members/{member}/holds` (scope `redeem`): reserves points; the hold is
    /// named by the request's id.
    pub async fn hold(&self, member: &MemberId, req: &HoldRequest) -> Result<WriteResult, Error> {
        let path = format!("/v1/members/{}/holds", segment(member.as_str()));
        self.write(Method::POST, path, req, &req.id, req.entry_kind(member))
            .await
    }

    /// `POST /v1/holds/{hold}/post` (scope `redeem`): redeems a hold's points.
    pub async fn post_hold(&self, hold: &EntryId, req: &PostRequest) -> Result<WriteResult, Error> {
        let path = format!("/v1/holds/{}/post", segment(hold.as_str()));
        self.write(Method::POST, path, req, &req.id, req.entry_kind(hold))
            .await
    }

    /// `POST /v1/holds/{hold}/void` (scope `redeem`): releases a hold's points.
    pub async fn void_hold(&self, hold: &EntryId, req: &VoidRequest) -> Result<WriteResult, Error> {
        let path = format!("/v1/holds/{}/void", segment(hold.as_str()));
        self.write(Method::POST, path, req, &req.id, req.entry_kind(hold))
            .await
    }

    /// `POST /v1/redemptions/{redemption}/refund` (scope `redeem`): reverses (part of) a
    /// redemption or posted hold.
    pub async fn refund(
        &self,
        redemption: &EntryId,
        req: &RefundRequest,
    ) -> Result<WriteResult, Error> {
        let path = format!("/v1/redemptions/{}/refund", segment(redemption.as_str()));
        self.write(Method::POST, path, req, &req.id, req.entry_kind(redemption))
            .await
    }

    /// `PUT /v1/policy/tiers` (scope `admin`).
    pub async fn set_tiers(&self, req: &SetTiersRequest) -> Result<WriteResult, Error> {
        self.write(
            Method::PUT,
            "/v1/policy/tiers".into(),
            req,
            &req.id,
            req.entry_kind(),
        )
        .await
    }

    /// `PUT /v1/policy/expiry` (scope `admin`).
    pub async fn set_expiry(&self, req: &SetExpiryRequest) -> Result<WriteResult, Error> {
        self.write(
            Method::PUT,
            "/v1/policy/expiry".into(),
            req,
            &req.id,
            req.entry_kind(),
        )
        .await
    }

    /// `PUT /v1/policy/rate-card` (scope `admin`).
    pub async fn set_rate_card(&self, req: &SetRateCardRequest) -> Result<WriteResult, Error> {
        self.write(
            Method::PUT,
            "/v1/policy/rate-card".into(),
            req,
            &req.id,
            req.entry_kind(),
        )
        .await
    }

    /// Logs an FX rate (admin key).
    pub async fn set_fx_rate(&self, req: &SetFxRateRequest) -> Result<WriteResult, Error> {
        self.write(
            Method::PUT,
            "/v1/policy/fx-rate".into(),
            req,
            &req.id,
            req.entry_kind(),
        )
        .await
    }

    /// Logs a spend authorisation: `req.payee` may hold up to `req.max_points` of the member's
    /// points once, before `req.expires_at`.
    pub async fn authorise(
        &self,
        member: &MemberId,
        req: &AuthoriseRequest,
    ) -> Result<WriteResult, Error> {
        self.write(
            Method::POST,
            format!("/v1/members/{}/authorisations", segment(member.as_str())),
            req,
            &req.id,
            req.entry_kind(member),
        )
        .await
    }

    // ---- Reads --------------------------------------------------------------------------

    /// `GET /v1/holds/{hold}` (scope `read`).
    pub async fn hold_status(&self, hold: &EntryId) -> Result<HoldInfo, Error> {
        self.json(Call::get(format!("/v1/holds/{}", segment(hold.as_str()))))
            .await
    }

    /// `GET /v1/members/{member}` (scope `read`): balance, available and pending points,
    /// tier and lots.
    pub async fn member(&self, member: &MemberId) -> Result<MemberInfo, Error> {
        self.json(Call::get(format!(
            "/v1/members/{}",
            segment(member.as_str())
        )))
        .await
    }

    /// `GET /v1/members/{member}/lots` (scope `read`): one page of the member's lots,
    /// soonest-expiring first; pass the previous page's `next_cursor` (or the member's
    /// `lots_next_cursor`) as `cursor`. `limit` is 1 to 50.
    pub async fn member_lots(
        &self,
        member: &MemberId,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<LotsPage, Error> {
        if limit.is_some_and(|l| l == 0 || l > 50) {
            return Err(Error::Invalid("limit must be 1 to 50".into()));
        }
        let mut call = Call::get(format!("/v1/members/{}/lots", segment(member.as_str())));
        if let Some(c) = cursor {
            call = call.query("cursor", c);
        }
        if let Some(l) = limit {
            call = call.query("limit", l);
        }
        self.json(call).await
    }

    /// `GET /v1/members/{member}/history` (scope `read`): one page; pass the previous
    /// page's `next_cursor` as `cursor`. `limit` is 1 to [`PAGE_LIMIT_MAX`].
    pub async fn history(
        &self,
        member: &MemberId,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<HistoryPage, Error> {
        check_limit(limit)?;
        let mut call = Call::get(format!("/v1/members/{}/history", segment(member.as_str())));
        if let Some(c) = cursor {
            call = call.query("cursor", c);
        }
        if let Some(l) = limit {
            call = call.query("limit", l);
        }
        self.json(call).await
    }

    /// A member's whole history as a stream of entries, fetching pages of `limit` as it is
    /// consumed. Ends with an error if the node repeats a cursor.
    pub fn history_stream(
        &self,
        member: &MemberId,
        limit: Option<u32>,
    ) -> impl Stream<Item = Result<HistoryItem, Error>> + Send + 'static {
        let client = self.clone();
        let member = member.clone();
        // State: the cursor of the next page (`None` for the first), or done.
        let pages = stream::try_unfold(Some(None::<String>), move |state| {
            let client = client.clone();
            let member = member.clone();
            async move {
                let Some(cursor) = state else {
                    return Ok(None);
                };
                let page = client.history(&member, cursor.as_deref(), limit).await?;
                let next = match page.next_cursor.clone() {
                    Some(c) if Some(&c) == cursor.as_ref() => {
                        return Err(Error::Decode("history cursor did not advance".into()))
                    }
                    Some(c) => Some(Some(c)),
                    None => None,
                };
                Ok(Some((page.entries, next)))
            }
        });
        pages
            .map_ok(|entries| stream::iter(entries.into_iter().map(Ok::<_, Error>)))
            .try_flatten()
    }

    /// A member's whole history, every page; at most [`HISTORY_ALL_ITEMS_MAX`] entries
    /// (use [`Client::history_stream`] for more).
    pub async fn history_all(&self, member: &MemberId) -> Result<Vec<HistoryItem>, Error> {
        let mut s = Box::pin(self.history_stream(member, Some(PAGE_LIMIT_MAX)));
        let mut out = Vec::new();
        while let Some(item) = s.next().await {
            if out.len() == HISTORY_ALL_ITEMS_MAX {
                return Err(Error::Decode(format!(
                    "history has more than {HISTORY_ALL_ITEMS_MAX} entries"
                )));
            }
            out.push(item?);
        }
        Ok(out)
    }

    /// `GET /v1/policy` (scope `read`): tiers, expiry and rate cards in force.
    pub async fn policy(&self) -> Result<PolicyInfo, Error> {
        self.json(Call::get("/v1/policy")).await
    }

    // ---- API keys -----------------------------------------------------------------------

    /// `POST /v1/admin/keys` (scope `admin`): the answer holds the secret key, once.
    pub async fn create_key(&self, req: &CreateKeyRequest) -> Result<CreatedKey, Error> {
        if req.scopes.is_empty() {
            return Err(Error::Invalid("a key needs at least one scope".into()));
        }
        self.json(Call::new(Method::POST, "/v1/admin/keys").json(req)?)
            .await
    }

    /// `GET /v1/admin/keys` (scope `admin`).
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>, Error> {
        let list: KeyList = self.json(Call::get("/v1/admin/keys")).await?;
        Ok(list.keys)
    }

    /// `DELETE /v1/admin/keys/{key_id}` (scope `admin`).
    pub async fn revoke_key(&self, key_id: &str) -> Result<RevokedKey, Error> {
        if key_id.is_empty() {
            return Err(Error::Invalid("empty key id".into()));
        }
        self.json(Call::new(
            Method::DELETE,
            format!("/v1/admin/keys/{}", segment(key_id)),
        ))
        .await
    }

    // ---- The public log -----------------------------------------------------------------

    /// `GET /v1/log/key`: the node's statement of its log key (pin yours out of band).
    pub async fn log_key(&self) -> Result<LogKey, Error> {
        self.json(Call::get("/v1/log/key")).await
    }

    /// `GET /v1/log/time`: the node's log time, from which to choose a future `valid_from`
    /// (rate cards, FX rates) or `expires_at` (holds, authorisations): the node refuses a time
    /// it has already passed, and its log time can be ahead of this machine's clock.
    pub async fn log_time(&self) -> Result<LogTimeView, Error> {
        self.json(Call::get("/v1/log/time")).await
    }

    /// `GET /v1/log/entries?start=&end=`: entries `start..end` (at most
    /// [`LOG_ENTRIES_PAGE_MAX`]) as their canonical bytes, unverified.
    pub async fn log_entries(&self, start: u64, end: u64) -> Result<Vec<LogEntry>, Error> {
        if end <= start || end - start > LOG_ENTRIES_PAGE_MAX {
            return Err(Error::Invalid(format!(
                "entries {start}..{end}: a range holds 1 to {LOG_ENTRIES_PAGE_MAX} entries"
            )));
        }
        let page: LogEntries = self
            .json(
                Call::get("/v1/log/entries")
                    .query("start", start)
                    .query("end", end),
            )
            .await?;
        Ok(page.entries)
    }

    /// `GET /v1/log/entries/{index}/receipt`: a receipt for any entry. With a pinned log
    /// key it is verified (and its index checked) before it is returned.
    pub async fn entry_receipt(&self, index: u64) -> Result<Receipt, Error> {
        let r: Receipt = self
            .json(Call::get(format!("/v1/log/entries/{index}/receipt")))
            .await?;
        if r.index != index {
            return Err(VerificationError::Mismatch {
                field: "index",
                expected: index.to_string(),
                got: r.index.to_string(),
            }
            .into());
        }
        if let Some(v) = &self.inner.verifier {
            r.verify(v).map_err(VerificationError::from)?;
        }
        Ok(r)
    }

    /// `GET /v1/log/proof/inclusion?index=&size=`.
    pub async fn inclusion_proof(&self, index: u64, size: u64) -> Result<InclusionProof, Error> {
        self.json(
            Call::get("/v1/log/proof/inclusion")
                .query("index", index)
                .query("size", size),
        )
        .await
    }

    /// `GET /v1/log/proof/consistency?old=&new=`.
    pub async fn consistency_proof(&self, old: u64, new: u64) -> Result<ConsistencyProof, Error> {
        self.json(
            Call::get("/v1/log/proof/consistency")
                .query("old", old)
                .query("new", new),
        )
        .await
    }

    /// `GET /v1/log/checkpoints`: one page of every checkpoint the node signed, by size,
    /// unverified.
    pub async fn checkpoints(
        &self,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<CheckpointPage, Error> {
        check_limit(limit)?;
        let mut call = Call::get("/v1/log/checkpoints");
        if let Some(c) = cursor {
            call = call.query("cursor", c);
        }
        if let Some(l) = limit {
            call = call.query("limit", l);
        }
        self.json(call).await
    }

    /// `GET /checkpoint`: the latest signed checkpoint note, unverified.
    pub async fn checkpoint_note(&self) -> Result<String, Error> {
        self.text(Call::get("/checkpoint")).await
    }

    /// The latest checkpoint, verified against the pinned log key, with its note.
    pub async fn verified_checkpoint(&self) -> Result<(Checkpoint, String), Error> {
        let v = self
            .inner
            .verifier
            .as_ref()
            .ok_or(VerificationError::NoPinnedKey)?;
        let note = self.checkpoint_note().await?;
        let (cp, _) = open_checkpoint(&note, v).map_err(VerificationError::from)?;
        Ok((cp, note))
    }

    /// `GET /tile/{L}/{N}[.p/{W}]`: a C2SP tlog-tiles hash tile; `width` for a partial one.
    pub async fn tile(&self, level: u8, index: u64, width: Option<u8>) -> Result<Vec<u8>, Error> {
        let mut path = format!("/tile/{level}/{}", tile_index_path(index));
        if let Some(w) = width {
            path.push_str(&format!(".p/{w}"));
        }
        Ok(self.send(Call::get(path)).await?.body)
    }

    /// `GET /tile/entries/{N}[.p/{W}]`: a C2SP tlog-tiles entry bundle.
    pub async fn entry_bundle(&self, index: u64, width: Option<u8>) -> Result<Vec<u8>, Error> {
        let mut path = format!("/tile/entries/{}", tile_index_path(index));
        if let Some(w) = width {
            path.push_str(&format!(".p/{w}"));
        }
        Ok(self.send(Call::get(path)).await?.body)
    }

    // ---- Operations ---------------------------------------------------------------------

    /// `GET /healthz`: succeeds while the node's process serves. Not retried.
    pub async fn healthz(&self) -> Result<(), Error> {
        let mut call = Call::get("/healthz");
        call.retry = false;
        self.send(call).await.map(|_| ())
    }

    /// `GET /readyz`: `true` when the log is open and the sequencer runs, `false` when the
    /// node answers 503. Not retried.
    pub async fn readyz(&self) -> Result<bool, Error> {
        let mut call = Call::get("/readyz");
        call.retry = false;
        call.accept = &[503];
        Ok(self.send(call).await?.status.is_success())
    }

    /// `GET /metrics`: Prometheus text.
    pub async fn metrics(&self) -> Result<String, Error> {
        self.text(Call::get("/metrics")).await
    }

    /// `GET /v1/openapi.json`: the API as OpenAPI 3.1.
    pub async fn openapi(&self) -> Result<serde_json::Value, Error> {
        self.json(Call::get("/v1/openapi.json")).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked() {
        assert!(Client::new("http://127.0.0.1:7700", None).is_ok());
        assert_eq!(
            Client::new("http://127.0.0.1:7700/", None)
                .unwrap()
                .base_url(),
            "http://127.0.0.1:7700"
        );
        assert_eq!(
            Client::new("https://x.example/loyalty/", None)
                .unwrap()
                .base_url(),
            "https://x.example/loyalty"
        );
        assert!(matches!(
            Client::new("ftp://x", None),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            Client::new("not a url", None),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            Client::new("http://x/?a=1", None),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            Client::new("http://x", Some("bad\nkey".into())),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn debug_output_hides_the_api_key() {
        let c = Client::new("http://x", Some("lk_secret".into())).unwrap();
        assert!(!format!("{c:?}").contains("lk_secret"));
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(segment("m-1.a_b:c"), "m-1.a_b:c");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }

    mod against_a_fake_node {
        use std::sync::atomic::Ordering;

        use super::super::*;
        use crate::error::ErrorCode;
        use crate::fake_node::{serve, signer, WriteNode};
        use ledger::types::Points;

        fn fast_retries(attempts_max: u32) -> RetryPolicy {
            RetryPolicy {
                attempts_max,
                backoff_initial_ms: 1,
                backoff_max_ms: 5,
                total_ms_max: 5_000,
            }
        }

        async fn client_of(node: &std::sync::Arc<WriteNode>, attempts_max: u32) -> Client {
            let url = serve(node.clone().router()).await;
            Client::builder(&url)
                .api_key("lk_test")
                .verifier(signer().verifier())
                .retry(fast_retries(attempts_max))
                .build()
                .unwrap()
        }

        fn earn_req(points: u64) -> EarnRequest {
            EarnRequest::new(crate::new_entry_id(), Points::new(points).unwrap())
        }

        #[tokio::test]
        async fn a_write_returns_a_verified_receipt_of_the_requested_entry() {
            let node = WriteNode::new(false, 0);
            let client = client_of(&node, 3).await;
            let member: MemberId = "m1".parse().unwrap();
            let req = earn_req(100);
            let w = client.earn(&member, &req).await.unwrap();
            assert!(w.is_verified());
            assert_eq!(w.status, WriteStatus::Appended);
            assert_eq!(w.entry.id, req.id);
            assert_eq!(w.index, 0);
            let w = client.earn(&member, &earn_req(5)).await.unwrap();
            assert_eq!(w.checkpoint.unwrap().size, 2);
        }

        #[tokio::test]
        async fn a_node_that_logs_another_body_fails_verification() {
            let node = WriteNode::new(true, 0);
            let client = client_of(&node, 3).await;
            let err = client
                .earn(&"m1".parse().unwrap(), &earn_req(100))
                .await
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Verification(VerificationError::Mismatch { field: "body", .. })
                ),
                "{err:?}"
            );
        }

        #[tokio::test]
        async fn overloaded_answers_are_retried_until_the_write_succeeds() {
            let node = WriteNode::new(false, 2);
            let client = client_of(&node, 5).await;
            let w = client.earn(&"m1".parse().unwrap(), &earn_req(1)).await;
            assert!(w.is_ok(), "{w:?}");
            assert_eq!(node.earn_calls.load(Ordering::SeqCst), 3);
        }

        #[tokio::test]
        async fn retries_stop_after_the_attempt_limit() {
            let node = WriteNode::new(false, 10);
            let client = client_of(&node, 3).await;
            let err = client
                .earn(&"m1".parse().unwrap(), &earn_req(1))
                .await
                .unwrap_err();
            assert_eq!(err.code(), Some(&ErrorCode::Overloaded));
            assert_eq!(node.earn_calls.load(Ordering::SeqCst), 3);
        }

        #[tokio::test]
        async fn client_errors_are_not_retried_and_carry_their_code() {
            let node = WriteNode::new(false, 0);
            let client = client_of(&node, 5).await;
            let req = RedeemRequest::new(crate::new_entry_id(), Points::new(1).unwrap());
            let err = client
                .redeem(&"m1".parse().unwrap(), &req)
                .await
                .unwrap_err();
            assert_eq!(err.code(), Some(&ErrorCode::InsufficientPoints));
            assert_eq!(err.status(), Some(422));
            assert_eq!(node.redeem_calls.load(Ordering::SeqCst), 1);
        }

        #[tokio::test]
        async fn internal_errors_are_retried_within_bounds() {
            let node = WriteNode::new(false, 0);
            let client = client_of(&node, 2).await;
            let err = client.policy().await.unwrap_err();
            assert_eq!(err.code(), Some(&ErrorCode::Internal));
            assert_eq!(node.policy_calls.load(Ordering::SeqCst), 2);
        }

        #[tokio::test]
        async fn invalid_writes_are_refused_before_sending() {
            let node = WriteNode::new(false, 0);
            let client = client_of(&node, 2).await;
            let req = EarnRequest::new("sys.expire-1".parse().unwrap(), Points::new(1).unwrap());
            let err = client.earn(&"m1".parse().unwrap(), &req).await.unwrap_err();
            assert!(matches!(err, Error::Invalid(_)), "{err:?}");
            let adjust = AdjustRequest {
                id: crate::new_entry_id(),
                points: Points::new(1).unwrap(),
                direction: ledger::entry::Direction::Credit,
                reason: String::new(),
            };
            let err = client
                .adjust(&"m1".parse().unwrap(), &adjust)
                .await
                .unwrap_err();
            assert!(matches!(err, Error::Invalid(_)), "{err:?}");
            assert_eq!(node.earn_calls.load(Ordering::SeqCst), 0);
        }

        #[tokio::test]
        async fn history_is_streamed_across_pages() {
            let node = WriteNode::new(false, 0);
            let client = client_of(&node, 2).await;
            let all = client.history_all(&"m1".parse().unwrap()).await.unwrap();
            let indexes: Vec<u64> = all.iter().map(|h| h.index).collect();
            assert_eq!(indexes, vec![0, 1, 2, 3, 4]);
        }

        #[tokio::test]
        async fn readiness_and_health_are_reported() {
            let node = WriteNode::new(false, 0);
            let client = client_of(&node, 2).await;
            assert!(!client.readyz().await.unwrap());
            client.healthz().await.unwrap();
        }

        #[tokio::test]
        async fn an_unreachable_node_is_a_transport_error() {
            // Bind and drop a listener to get a port that refuses connections.
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            let client = Client::builder(&format!("http://127.0.0.1:{port}"))
                .retry(fast_retries(2))
                .build()
                .unwrap();
            let err = client.healthz().await.unwrap_err();
            assert!(matches!(err, Error::Transport(_)), "{err:?}");
        }
    }
}
