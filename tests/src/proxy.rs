//! A fault-injecting TCP proxy for multi-node tests: one loopback listener that forwards every
//! connection to one target address, with faults the test switches at run time, per direction
//! (`up`: client to target, `down`: target to client):
//!
//! - **delay**: every chunk read is written on after this many milliseconds;
//! - **cut**: bytes stop flowing without closing anything (a partition in which TCP keeps
//!   retransmitting): connections stay open, new ones are accepted, and forwarding resumes
//!   where it stopped when the cut is healed;
//! - **drop**: every open connection is closed at once, and new ones are accepted and closed
//!   (a peer that resets every connection).
//!
//! Since every node-to-node call is HTTP to a pinned partner URL, pinning each partner at a
//! proxy dedicated to one (from, to) pair makes partitions one-way and per pair: cutting air's
//! proxy to coffee leaves coffee's calls to air alone. Cutting only `down` lets requests arrive
//! and act while their answers are lost.
//!
//! Invariants: a fault applies to connections already open as well as new ones; dropping a
//! [`Proxy`] stops its listener and closes every connection it forwards; each connection holds
//! at most one chunk ([`CHUNK_BYTES_MAX`]) in flight per direction.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Largest chunk read from one side before it is written to the other.
pub const CHUNK_BYTES_MAX: usize = 16 * 1024;
/// How long the proxy tries to connect to its target before closing the client's connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What happens to the bytes of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flow {
    /// Forwarded.
    #[default]
    Pass,
    /// Held back without closing the connection.
    Cut,
    /// Connections are closed.
    Drop,
}

/// The faults of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirectionFaults {
    pub flow: Flow,
    /// Added to every chunk's way through, in ms.
    pub delay_ms: u64,
}

/// The faults of a proxy, both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Faults {
    /// From the client to the target (requests).
    pub up: DirectionFaults,
    /// From the target to the client (answers).
    pub down: DirectionFaults,
}

impl Faults {
    /// No fault at all.
    pub fn healed() -> Faults {
        Faults::default()
    }

    /// Both directions with `flow` and no delay.
    pub fn both(flow: Flow) -> Faults {
        let d = DirectionFaults { flow, delay_ms: 0 };
        Faults { up: d, down: d }
    }

    /// Both directions delayed by `delay_ms`.
    pub fn delayed(delay_ms: u64) -> Faults {
        let d = DirectionFaults {
            flow: Flow::Pass,
            delay_ms,
        };
        Faults { up: d, down: d }
    }

    /// Whether a connection is closed under these faults.
    fn drops(&self) -> bool {
        self.up.flow == Flow::Drop || self.down.flow == Flow::Drop
    }
}

impl std::fmt::Display for DirectionFaults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.flow {
            Flow::Pass => f.write_str("pass")?,
            Flow::Cut => f.write_str("cut")?,
            Flow::Drop => f.write_str("drop")?,
        }
        if self.delay_ms > 0 {
            write!(f, " +{} ms", self.delay_ms)?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.up == self.down {
            write!(f, "both ways {}", self.up)
        } else {
            write!(f, "requests {}, answers {}", self.up, self.down)
        }
    }
}

/// A running proxy: a loopback listener forwarding to `target`. Dropping it stops everything.
pub struct Proxy {
    /// The address clients connect to.
    pub addr: SocketAddr,
    /// Where connections are forwarded.
    pub target: SocketAddr,
    faults: watch::Sender<Faults>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy on a free loopback port forwarding to `target`, without faults.
    pub async fn start(target: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (faults, rx) = watch::channel(Faults::healed());
        let task = tokio::spawn(accept_loop(listener, target, rx));
        Ok(Proxy {
            addr,
            target,
            faults,
            task,
        })
    }

    /// `http://<addr>`, the URL to pin or to point a client at.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the faults of both directions (replacing the previous ones), for open and new
    /// connections alike.
    pub fn set(&self, faults: Faults) {
        self.faults.send_replace(faults);
    }

    /// The current faults.
    pub fn faults(&self) -> Faults {
        *self.faults.borrow()
    }

    /// Removes every fault.
    pub fn heal(&self) {
        self.set(Faults::healed());
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its `JoinSet`, which aborts every connection task,
        // which drops (closes) both of its sockets.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, rx: watch::Receiver<Faults>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                if rx.borrow().drops() {
                    drop(client);
                    continue;
                }
                connections.spawn(forward(client, target, rx.clone()));
            }
            // Reap finished connections so the set stays as large as the open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Forwards one connection until both sides are done, an error, or a drop fault.
async fn forward(client: TcpStream, target: SocketAddr, mut rx: watch::Receiver<Faults>) {
    let upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(s)) => s,
        _ => return,
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_r, client_w) = client.into_split();
    let (up_r, up_w) = upstream.into_split();
    let faults = Arc::new(rx.clone());
    let pumps = async {
        tokio::join!(
            pump(client_r, up_w, faults.as_ref().clone(), |f| f.up),
            pump(up_r, client_w, faults.as_ref().clone(), |f| f.down),
        )
    };
    tokio::select! {
        _ = pumps => {}
        _ = rx.wait_for(Faults::drops) => {}
    }
}

/// Copies one direction, honouring its faults; on end of stream, shuts the other side's
/// writing half so a half-close passes through.
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    mut rx: watch::Receiver<Faults>,
    pick: fn(&Faults) -> DirectionFaults,
) where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK_BYTES_MAX];
    loop {
        // While cut, nothing is read (the bytes wait in the kernel's buffers).
        if rx.wait_for(|f| pick(f).flow != Flow::Cut).await.is_err() {
            return;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
            // A fault changed: look again before reading (a cut must stop the flow now).
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        let delay_ms = pick(&rx.borrow()).delay_ms;
        if delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
        // A cut that started while this chunk was on its way holds it back too.
        if rx.wait_for(|f| pick(f).flow != Flow::Cut).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on loopback: answers every chunk with the same bytes.
    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    /// Sends `msg` and reads the echo, within `limit`; `None` if it does not come back.
    async fn round_trip(s: &mut TcpStream, msg: &[u8], limit: Duration) -> Option<Vec<u8>> {
        s.write_all(msg).await.ok()?;
        let mut got = vec![0u8; msg.len()];
        match tokio::time::timeout(limit, s.read_exact(&mut got)).await {
            Ok(Ok(_)) => Some(got),
            _ => None,
        }
    }

    #[tokio::test]
    async fn forwards_delays_cuts_and_drops() {
        let proxy = Proxy::start(echo_server().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        let short = Duration::from_millis(300);
        assert_eq!(
            round_trip(&mut s, b"one", short).await.as_deref(),
            Some(&b"one"[..])
        );

        // A delay of 150 ms each way: the echo takes at least 300 ms.
        proxy.set(Faults::delayed(150));
        let t = std::time::Instant::now();
        assert!(round_trip(&mut s, b"two", Duration::from_secs(2))
            .await
            .is_some());
        assert!(
            t.elapsed() >= Duration::from_millis(300),
            "{:?}",
            t.elapsed()
        );

        // A cut of the answers only: the request arrives, the answer waits, and comes once
        // the cut heals, on the same connection.
        proxy.set(Faults {
            down: DirectionFaults {
                flow: Flow::Cut,
                delay_ms: 0,
            },
            ..Faults::healed()
        });
        assert!(round_trip(&mut s, b"three", short).await.is_none());
        proxy.heal();
        let mut got = [0u8; 5];
        tokio::time::timeout(short, s.read_exact(&mut got))
            .await
            .expect("the held answer arrives after the heal")
            .unwrap();
        assert_eq!(&got, b"three");

        // A drop closes the open connection and every new one.
        proxy.set(Faults::both(Flow::Drop));
        let mut buf = [0u8; 8];
        let n = tokio::time::timeout(short, s.read(&mut buf))
            .await
            .expect("closed at once");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        let mut s2 = TcpStream::connect(proxy.addr).await.unwrap();
        assert!(round_trip(&mut s2, b"four", short).await.is_none());

        // Healed: new connections work again.
        proxy.heal();
        let mut s3 = TcpStream::connect(proxy.addr).await.unwrap();
        assert!(round_trip(&mut s3, b"five", short).await.is_some());

        // Dropped: the listener is gone.
        let addr = proxy.addr;
        drop(proxy);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut s4 = TcpStream::connect(addr).await;
        if let Ok(s) = s4.as_mut() {
            assert!(round_trip(s, b"six", short).await.is_none());
        }
    }
}
