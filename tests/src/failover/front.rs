//! The brand's address in front of its two nodes: a loopback TCP forwarder that sends each
//! new connection to the node that reports itself primary (the largest epoch wins), as an
//! operator's load balancer with a health check on `GET /v1/ha/status` does. When the primary
//! changes, the connections forwarded to the former one are closed (keep-alive connections
//! would otherwise stay on a node that became the standby).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// A running front; dropping it stops it.
pub struct Front {
    pub addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Front {
    /// Starts a front over nodes reachable at `urls` (`http://127.0.0.1:port`).
    pub async fn start(urls: Vec<String>) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let target: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let (changed_tx, changed_rx) = tokio::sync::watch::channel(0u64);
        let t = target.clone();
        let poll = tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let mut best: Option<(i64, SocketAddr)> = None;
                for u in &urls {
                    let Ok(r) = http
                        .get(format!("{u}/v1/ha/status"))
                        .timeout(Duration::from_millis(300))
                        .send()
                        .await
                    else {
                        continue;
                    };
                    let Ok(v) = r.json::<serde_json::Value>().await else {
                        continue;
                    };
                    if v["role"] == "primary" && v["fenced"].is_null() {
                        let epoch = v["epoch"].as_i64().unwrap_or(0);
                        let a: SocketAddr = u
                            .trim_start_matches("http://")
                            .parse()
                            .expect("a loopback address");
                        if best.is_none_or(|(e, _)| epoch > e) {
                            best = Some((epoch, a));
                        }
                    }
                }
                if let Some((_, a)) = best {
                    let old = t.lock().expect("target lock").replace(a);
                    if old != Some(a) {
                        changed_tx.send_modify(|g| *g += 1);
                        if std::env::var_os("LOYALTY_FAILOVER_DEBUG").is_some() {
                            eprintln!("front: {old:?} -> {a}");
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let to = *target.lock().expect("target lock");
                let mut changed = changed_rx.clone();
                changed.mark_unchanged();
                tokio::spawn(async move {
                    let Some(to) = to else { return };
                    match TcpStream::connect(to).await {
                        Ok(mut out) => {
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {},
                                _ = changed.changed() => {},
                            }
                        }
                        Err(e) => {
                            if std::env::var_os("LOYALTY_FAILOVER_DEBUG").is_some() {
                                eprintln!("front: connect {to}: {e}");
                            }
                        }
                    }
                });
            }
        });
        Front {
            addr,
            tasks: vec![poll, accept],
        }
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
