//! Client connections (issue 13, item 3): the accept loop, a cap on open connections, a
//! deadline on each request head, an idle deadline, and the open-file budget.
//!
//! Invariants: at most `limits.connections_max` client connections are open at once (one more
//! is accepted and closed at once, and counted); a connection whose request head is not
//! complete within `limits.header_read_timeout_ms` is closed, and so is one on which no byte
//! moves for `limits.idle_timeout_ms`; an accept error (such as running out of file
//! descriptors) is counted, logged and retried, never fatal. The open-file limit is checked at
//! start-up to cover the connections plus [`FD_RESERVE`], so that client connections alone can
//! never take the descriptors the store (and so the sequencer) needs.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Result;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::config::Limits;
use crate::metrics::Metrics;

/// File descriptors kept beyond `limits.connections_max` for everything else the node opens:
/// its store and the partners' mirrors (RocksDB files and WAL), connections to partners, the
/// control socket, logs.
pub const FD_RESERVE: u64 = 128;
/// Pause after a failed accept (e.g. no descriptor left), so that the loop does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Makes sure the process may open `connections_max` + [`FD_RESERVE`] files: raises the soft
/// limit up to the hard limit if needed, and otherwise refuses, naming the key.
pub fn ensure_fd_limit(connections_max: usize) -> Result<u64> {
    let need = connections_max as u64 + FD_RESERVE;
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct passed; no other memory is touched.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            anyhow::bail!(
                "cannot read the open-file limit: {}",
                std::io::Error::last_os_error()
            );
        }
        if lim.rlim_cur < need {
            if lim.rlim_max < need {
                anyhow::bail!(
                    "config key `limits.connections_max` = {connections_max} needs an open-file limit of at least {need} ({connections_max} + {FD_RESERVE} reserved), but the hard limit is {}: raise it (ulimit -n, LimitNOFILE=) or lower limits.connections_max",
                    lim.rlim_max
                );
            }
            let raised = libc::rlimit {
                rlim_cur: need as libc::rlim_t,
                rlim_max: lim.rlim_max,
            };
            // SAFETY: setrlimit reads the struct passed; raising the soft limit up to the
            // hard limit is always allowed.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
                anyhow::bail!(
                    "cannot raise the open-file limit to {need}: {}",
                    std::io::Error::last_os_error()
                );
            }
            tracing::info!(from = lim.rlim_cur, to = need, "open-file limit raised");
            return Ok(need);
        }
        Ok(lim.rlim_cur)
    }
    #[cfg(not(unix))]
    {
        Ok(need)
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets every connection finish
/// its request in flight and close (HTTP/1.1).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &Limits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let max = limits.connections_max;
    let slots = Arc::new(Semaphore::new(max));
    let header_timeout = Duration::from_millis(limits.header_read_timeout_ms);
    let idle = Duration::from_millis(limits.idle_timeout_ms);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut last_error_log: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    metrics.accept_errors.inc();
                    if last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        tracing::error!(error = %e, "accept failed (retrying); see the open-file limit in the operator guide");
                        last_error_log = Some(Instant::now());
                    }
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics.connections_refused.inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        metrics.connections_open.inc();
        let (router, metrics, stop) = (router.clone(), metrics.clone(), stop_rx.clone());
        tokio::spawn(async move {
            serve_connection(stream, router, header_timeout, idle, stop).await;
            metrics.connections_open.dec();
            drop(permit);
        });
    }
    let _ = stop_tx.send(true);
    // Every connection gives its slot back when it closes.
    let _ = slots.acquire_many(max as u32).await;
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    header_timeout: Duration,
    idle: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let epoch = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Tracked {
        inner: stream,
        epoch,
        last_ms: activity.clone(),
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(io, TowerToHyperService::new(router));
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = idle_expired(epoch, &activity, idle) => {
                tracing::debug!("connection idle; closed");
                return;
            }
            r = stop.changed(), if !stopping => {
                stopping = true;
                if r.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Completes once no byte has moved for `idle`.
async fn idle_expired(epoch: Instant, activity: &AtomicU64, idle: Duration) {
    loop {
        let last = epoch + Duration::from_millis(activity.load(Ordering::Relaxed));
        let deadline = last + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline.into()).await;
    }
}

/// A stream that records when a byte last moved either way.
struct Tracked {
    inner: TcpStream,
    epoch: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Tracked {
    fn touch(&self) {
        self.last_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
