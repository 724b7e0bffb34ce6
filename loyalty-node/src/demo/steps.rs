//! What every step of the demo is made of: narration, and calls through the SDK that check what
//! they expect, with bounded waits.
//!
//! Invariant: a helper either confirms exactly what the step expects or fails with what the node
//! answered instead (an API error, or the value it showed), naming the brand and the member.

use std::fmt::{Debug, Display};
use std::future::Future;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use sdk::federation::{Committed, RedeemAtPartner};
use sdk::{AuthoriseRequest, EarnRequest, EntryId, LogTime, MemberId, Points};

use super::{now_ms, DemoNode, POLL_INTERVAL};

/// How long partners have to mirror each other's latest entries.
pub const MIRROR_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node has to log a member's tier change after the write that causes it.
pub const TIER_CHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a spend authorisation of the demo stays usable.
pub const AUTHORISATION_TTL_MS: u64 = 10 * 60 * 1000;

/// Prints numbered steps and short indented lines.
#[derive(Default)]
pub struct Narrator {
    step: u32,
}

impl Narrator {
    /// Starts the next numbered step.
    pub fn step(&mut self, title: &str) {
        self.step += 1;
        println!("\n{:>2}. {title}", self.step);
    }

    /// One line of the current step.
    pub fn say(&self, text: impl AsRef<str>) {
        println!("    {}", text.as_ref());
    }

    /// Where to look at what the step did.
    pub fn see(&self, url: impl AsRef<str>) {
        println!("      see {}", url.as_ref());
    }
}

/// `n` with thousands separators.
pub fn num(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `EUR 14.70` for 1470 minor units of EUR.
pub fn money(currency: &str, minor: u64) -> String {
    let digits = currency
        .parse::<ledger::money::Currency>()
        .map(|c| u32::from(c.minor_unit()))
        .unwrap_or(2);
    if digits == 0 {
        return format!("{currency} {minor}");
    }
    let scale = 10u64.pow(digits);
    format!(
        "{currency} {}.{:0width$}",
        minor / scale,
        minor % scale,
        width = digits as usize
    )
}

/// Parses one of the demo's own values (ids, currencies, decimals), naming it on failure.
pub fn parse<T: FromStr>(s: &str) -> Result<T>
where
    T::Err: Display,
{
    s.parse()
        .map_err(|e| anyhow!("{s:?} as {}: {e}", std::any::type_name::<T>()))
}

pub fn id(s: &str) -> Result<EntryId> {
    parse(s)
}

pub fn member(s: &str) -> Result<MemberId> {
    parse(s)
}

pub fn points(n: u64) -> Result<Points> {
    Points::new(n).map_err(|e| anyhow!("{n} points: {e}"))
}

pub fn log_time(ms: u64) -> Result<LogTime> {
    LogTime::new(ms).map_err(|e| anyhow!("log time {ms}: {e}"))
}

/// Fails with `what` unless `got == want`.
pub fn expect<T: PartialEq + Debug>(what: &str, got: T, want: T) -> Result<()> {
    if got != want {
        bail!("{what}: expected {want:?}, the node says {got:?}");
    }
    Ok(())
}

/// Probes every [`POLL_INTERVAL`] until `probe` is `Ok`, for at most `limit`; fails with the
/// probe's last reason.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let last = match tokio::time::timeout_at(deadline.into(), probe()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(why)) => why,
            Err(_) => "the last probe did not finish".to_owned(),
        };
        if Instant::now() >= deadline {
            bail!("{what}: not reached within {limit:?}; last: {last}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Waits until the system clock has passed `t` (ms since the Unix epoch).
pub async fn wait_past(t: u64) {
    let now = now_ms();
    if now <= t {
        tokio::time::sleep(Duration::from_millis(t - now + 1)).await;
    }
}

/// Waits until `observer`'s verified mirror of `origin` holds `origin`'s whole log as of now.
pub async fn wait_mirrored(observer: &DemoNode, origin: &DemoNode) -> Result<()> {
    let (cp, _) = origin
        .client
        .verified_checkpoint()
        .await
        .with_context(|| format!("{}'s checkpoint", origin.brand()))?;
    let size = cp.size;
    wait_for(
        &format!(
            "{} mirrors {}'s log up to {size}",
            observer.brand(),
            origin.brand()
        ),
        MIRROR_TIMEOUT,
        || async {
            let partners = observer
                .client
                .partners()
                .await
                .map_err(|e| e.to_string())?;
            let p = partners
                .iter()
                .find(|p| p.brand.as_str() == origin.brand())
                .ok_or_else(|| format!("{} is not listed", origin.brand()))?;
            if p.verified_size >= size {
                Ok(())
            } else {
                Err(format!(
                    "verified {} of {size}; last error: {}",
                    p.verified_size,
                    p.last_error.as_deref().unwrap_or("none")
                ))
            }
        },
    )
    .await
}

/// Checks a member's balance, pending points and tier at `node`. The node logs a tier change
/// right after the write that causes it (spec/protocol.md §4.6, upgrade at once), so a read may
/// briefly show the old tier: the check waits [`TIER_CHANGE_TIMEOUT`] for it.
pub async fn check_member(
    node: &DemoNode,
    who: &str,
    balance: u64,
    pending: u64,
    tier: &str,
) -> Result<sdk::MemberInfo> {
    let m = member(who)?;
    let want = (balance, pending, Some(tier.to_owned()));
    wait_for(
        &format!(
            "{who} at {} with (balance, pending, tier) {want:?}",
            node.brand()
        ),
        TIER_CHANGE_TIMEOUT,
        || async {
            let got = node.client.member(&m).await.map_err(|e| e.to_string())?;
            let seen = (
                got.balance,
                got.pending,
                got.tier.as_ref().map(|t| t.to_string()),
            );
            if seen == want {
                Ok(got)
            } else {
                Err(format!("the node says {seen:?}"))
            }
        },
    )
    .await
}

/// Earns `pts` qualifying points for `who` at `node` under entry id `entry`.
pub async fn earn(node: &DemoNode, who: &str, entry: &str, pts: u64) -> Result<()> {
    node.client
        .earn(&member(who)?, &EarnRequest::new(id(entry)?, points(pts)?))
        .await
        .with_context(|| format!("earn {pts} for {who} at {}", node.brand()))?;
    Ok(())
}

/// Logs, at the member's brand, a spend authorisation for `payee` of at most `max` points.
pub async fn authorise(
    node: &DemoNode,
    who: &str,
    auth: &str,
    payee: &str,
    max: u64,
) -> Result<()> {
    node.client
        .authorise(
            &member(who)?,
            &AuthoriseRequest {
                id: id(auth)?,
                payee: parse(payee)?,
                max_points: points(max)?,
                expires_at: log_time(now_ms() + AUTHORISATION_TTL_MS)?,
            },
        )
        .await
        .with_context(|| format!("authorise {payee} for {who} at {}", node.brand()))?;
    Ok(())
}

/// A redemption of `payer`'s points under `agreement`, for `points` or for a `price_minor`.
pub struct Redemption<'a> {
    pub redemption: &'a str,
    pub agreement: &'a str,
    pub payer: &'a str,
    pub member: &'a str,
    pub points: Option<u64>,
    pub price_minor: Option<u64>,
    pub authorisation: &'a str,
}

impl Redemption<'_> {
    /// The SDK's request for it.
    pub fn request(&self) -> Result<RedeemAtPartner> {
        Ok(RedeemAtPartner {
            redemption: id(self.redemption)?,
            agreement: id(self.agreement)?,
            payer: parse(self.payer)?,
            member: member(self.member)?,
            points: self.points.map(points).transpose()?,
            price_minor: self.price_minor,
            authorisation: id(self.authorisation)?,
        })
    }
}

/// The log time of the payer's side of a commit (the obligation line's time), from its receipt
/// verified against the payer's key.
pub fn payable_time(done: &Committed, payer: &DemoNode) -> Result<u64> {
    let v = done
        .payer
        .payable
        .verify(&payer.verifier())
        .map_err(|e| anyhow!("{}'s payable receipt: {e}", payer.brand()))?;
    Ok(v.entry.time.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_money_read_naturally() {
        assert_eq!(num(0), "0");
        assert_eq!(num(950), "950");
        assert_eq!(num(1500), "1,500");
        assert_eq!(num(1_234_567), "1,234,567");
        assert_eq!(money("EUR", 1470), "EUR 14.70");
        assert_eq!(money("EUR", 5), "EUR 0.05");
        assert_eq!(money("JPY", 1979), "JPY 1979");
        assert_eq!(money("KWD", 308), "KWD 0.308");
    }
}
