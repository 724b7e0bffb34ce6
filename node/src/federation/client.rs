//! The one client of node-to-node requests (spec/federation.md §2): every request a node sends
//! a partner (mirror pulls, witness submissions, agreements, redemption steps, refunds,
//! statements) goes through it. It signs the request with the node key, reads at most a given
//! number of bytes of the answer, and classifies what came back: a status and a body, or why
//! there was none.
//!
//! Invariants: no request leaves unsigned; no answer is read past its limit; an error's text is
//! a fixed description or a status, never the answer's content or the partner's URL (errors are
//! shown on the public explorer, and a partner URL must not become a way to read another host's
//! answers).

use axum::http::{Method, StatusCode};

use super::{peer, Federation, Partner};

/// Most bytes read of a partner's answer to a redemption step, refund, statement or agreement.
pub const STEP_ANSWER_BYTES_MAX: usize = 1 << 20;

/// Why a partner's request gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// No status came back: not sent, timed out, connection refused, redirect refused.
    #[error("{0}")]
    Unreachable(&'static str),
    /// A status other than 2xx, where only success was usable.
    #[error("HTTP {}", .0.as_u16())]
    Status(StatusCode),
    /// The status came back, but not the body: unreadable, or larger than the limit.
    #[error("{0}")]
    Body(String),
}

/// A partner's answer: its status and its body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

/// Requests to one partner, signed by this node.
pub struct PeerClient<'a> {
    fed: &'a Federation,
    partner: &'a Partner,
}

impl<'a> PeerClient<'a> {
    pub fn new(fed: &'a Federation, partner: &'a Partner) -> PeerClient<'a> {
        PeerClient { fed, partner }
    }

    /// Sends `method path` with `body` (and `content_type`, if any), signed.
    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&'static str>,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, PeerError> {
        let url = format!("{}{path}", self.partner.url);
        let signature = peer::sign(self.fed, &self.partner.brand, method.as_str(), path, &body);
        let has_body = method != Method::GET;
        let mut req = self.fed.http.request(method, &url);
        if let Some(t) = content_type {
            req = req.header("content-type", t);
        }
        if has_body {
            req = req.body(body);
        }
        for (k, v) in signature {
            req = req.header(k, v);
        }
        req.send()
            .await
            .map_err(|e| PeerError::Unreachable(describe(&e)))
    }

    /// A signed GET: the body of a 2xx answer, at most `max` bytes. Another status is
    /// [`PeerError::Status`] (its body is not read).
    pub async fn get(&self, path: &str, max: usize) -> Result<Vec<u8>, PeerError> {
        let resp = self.send(Method::GET, path, None, Vec::new()).await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(PeerError::Status(status));
        }
        read_limited(resp, max).await.map_err(PeerError::Body)
    }

    /// A signed POST of `body` (no content type): the partner's status and body, at most `max`
    /// bytes, whatever the status.
    pub async fn post(&self, path: &str, body: Vec<u8>, max: usize) -> Result<Reply, PeerError> {
        let resp = self.send(Method::POST, path, None, body).await?;
        let status = resp.status();
        let body = read_limited(resp, max).await.map_err(PeerError::Body)?;
        Ok(Reply { status, body })
    }

    /// A signed POST of a JSON `body` (the steps of a redemption, refunds, statements and
    /// agreements): the partner's status and body, whatever the status. A body that cannot be
    /// read within [`STEP_ANSWER_BYTES_MAX`] is answered as empty: the caller judges the status,
    /// and an empty body is no valid answer to any step.
    pub async fn post_json(&self, path: &str, body: Vec<u8>) -> Result<Reply, PeerError> {
        let resp = self
            .send(Method::POST, path, Some("application/json"), body)
            .await?;
        let status = resp.status();
        let body = read_limited(resp, STEP_ANSWER_BYTES_MAX)
            .await
            .unwrap_or_default();
        Ok(Reply { status, body })
    }
}

/// A fixed description of a failed partner request (no URL, no answer).
pub fn describe(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_redirect() {
        "redirect refused"
    } else if e.is_body() || e.is_decode() {
        "the answer could not be read"
    } else {
        "the request failed"
    }
}

/// Reads a response body, refusing more than `max` bytes. Errors are fixed messages.
pub async fn read_limited(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e).to_string())? {
        if body.len() + chunk.len() > max {
            return Err(format!("answer larger than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_says_a_status_or_a_fixed_description_only() {
        assert_eq!(
            PeerError::Status(StatusCode::NOT_FOUND).to_string(),
            "HTTP 404"
        );
        assert_eq!(PeerError::Unreachable("timed out").to_string(), "timed out");
        assert_eq!(
            PeerError::Body("answer larger than 10 bytes".into()).to_string(),
            "answer larger than 10 bytes"
        );
    }
}
