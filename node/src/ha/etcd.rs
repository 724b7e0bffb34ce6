//! [`LockBackend`] on etcd (v3 API, through the `etcd-client` crate).
//!
//! Keys under the configured prefix: `<prefix>/leader` holds the leader's [`LeaderInfo`]
//! attached to its lease (deleted by etcd when the lease expires); its create revision is the
//! leadership's epoch, unique and increasing. `<prefix>/head` holds the committed [`Head`] as
//! JSON; its mod revision is the version a commit compares. `<prefix>/switchover` names the
//! node a manual switchover was asked for.
//!
//! Invariant: the one write that moves the head is a transaction comparing the head's mod
//! revision **and** the leader key's create revision with the caller's epoch; an expired or
//! superseded lease fails the second compare, whatever the caller believes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, PutOptions, Txn, TxnOp};

use super::lock::{BoxFuture, Head, LeaderInfo, Lease, LockBackend, LockError, Locked};

/// How long one etcd request may take before it counts as unavailable.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(1_500);

/// The coordination store on an etcd cluster.
#[derive(Clone)]
pub struct EtcdLock {
    client: Client,
    leader_key: String,
    head_key: String,
    switchover_key: String,
}

fn unavailable(e: etcd_client::Error) -> LockError {
    LockError::Unavailable(e.to_string())
}

impl EtcdLock {
    /// Connects to the cluster at `endpoints` (`http://host:port`), keys under `prefix`.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<EtcdLock, LockError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_millis(500), Duration::from_millis(1_000));
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(unavailable)?;
        let prefix = prefix.trim_end_matches('/');
        Ok(EtcdLock {
            client,
            leader_key: format!("{prefix}/leader"),
            head_key: format!("{prefix}/head"),
            switchover_key: format!("{prefix}/switchover"),
        })
    }

    async fn get(&self, key: &str) -> Result<Option<etcd_client::KeyValue>, LockError> {
        let mut c = self.client.clone();
        let r = c.get(key, None).await.map_err(unavailable)?;
        Ok(r.kvs().first().cloned())
    }

    fn locked(kv: &etcd_client::KeyValue) -> Result<Locked, LockError> {
        let head: Head = serde_json::from_slice(kv.value())
            .map_err(|e| LockError::Unavailable(format!("the stored head does not parse: {e}")))?;
        Ok(Locked {
            head,
            version: kv.mod_revision(),
        })
    }

    async fn write_head(&self, compares: Vec<Compare>, head: &Head) -> Result<Locked, LockError> {
        let value = serde_json::to_vec(head).expect("a head serializes");
        let txn =
            Txn::new()
                .when(compares)
                .and_then([TxnOp::put(self.head_key.clone(), value, None)]);
        let mut c = self.client.clone();
        let r = c.txn(txn).await.map_err(unavailable)?;
        if !r.succeeded() {
            return Err(LockError::Conflict);
        }
        let revision = r
            .header()
            .map(|h| h.revision())
            .ok_or_else(|| LockError::Unavailable("a transaction answer without header".into()))?;
        Ok(Locked {
            head: head.clone(),
            version: revision,
        })
    }

    /// Keeps `lease` alive every third of its time to live; marks it lost (and stops) when a
    /// renewal fails or the lease is gone.
    fn keep_alive(&self, lease: Lease, ttl_s: i64) {
        let mut c = self.client.clone();
        let period = Duration::from_millis((ttl_s.max(1) as u64 * 1000) / 3);
        tokio::spawn(async move {
            let lost = |l: &Lease| l.lost.store(true, Ordering::Release);
            let Ok((mut keeper, mut stream)) = c.lease_keep_alive(lease.id).await else {
                lost(&lease);
                return;
            };
            // The lease counts as lost one period before etcd would expire it, so that the
            // leader stops on its own before anybody else may lead.
            let mut last_ok = tokio::time::Instant::now();
            let budget = Duration::from_millis(ttl_s.max(1) as u64 * 1000) - period;
            loop {
                if lease.is_lost() {
                    return;
                }
                let round = async {
                    keeper.keep_alive().await.map_err(unavailable)?;
                    match stream.message().await.map_err(unavailable)? {
                        Some(r) if r.ttl() > 0 => Ok(()),
                        _ => Err(LockError::Conflict),
                    }
                };
                match tokio::time::timeout(period, round).await {
                    Ok(Ok(())) => last_ok = tokio::time::Instant::now(),
                    Ok(Err(LockError::Conflict)) => {
                        lost(&lease);
                        return;
                    }
                    _ => {}
                }
                if last_ok.elapsed() >= budget {
                    tracing::warn!(
                        lease = lease.id,
                        "the leadership lease could not be renewed"
                    );
                    lost(&lease);
                    return;
                }
                tokio::time::sleep(period.saturating_sub(last_ok.elapsed().min(period))).await;
            }
        });
    }
}

impl LockBackend for EtcdLock {
    fn fetch(&self) -> BoxFuture<'_, Result<Option<Locked>, LockError>> {
        Box::pin(async move {
            match self.get(&self.head_key).await? {
                None => Ok(None),
                Some(kv) => Ok(Some(Self::locked(&kv)?)),
            }
        })
    }

    fn create<'a>(
        &'a self,
        lease: &'a Lease,
        head: &'a Head,
    ) -> BoxFuture<'a, Result<Locked, LockError>> {
        Box::pin(async move {
            self.write_head(
                vec![
                    Compare::version(self.head_key.clone(), CompareOp::Equal, 0),
                    Compare::create_revision(
                        self.leader_key.clone(),
                        CompareOp::Equal,
                        lease.epoch,
                    ),
                ],
                head,
            )
            .await
        })
    }

    fn replace<'a>(
        &'a self,
        lease: &'a Lease,
        old: &'a Locked,
        new: &'a Head,
    ) -> BoxFuture<'a, Result<Locked, LockError>> {
        Box::pin(async move {
            self.write_head(
                vec![
                    Compare::mod_revision(self.head_key.clone(), CompareOp::Equal, old.version),
                    Compare::create_revision(
                        self.leader_key.clone(),
                        CompareOp::Equal,
                        lease.epoch,
                    ),
                ],
                new,
            )
            .await
        })
    }

    fn campaign<'a>(
        &'a self,
        me: &'a LeaderInfo,
        ttl_s: i64,
    ) -> BoxFuture<'a, Result<Option<Lease>, LockError>> {
        Box::pin(async move {
            let mut c = self.client.clone();
            let granted = c.lease_grant(ttl_s, None).await.map_err(unavailable)?;
            let id = granted.id();
            let value = serde_json::to_vec(me).expect("leader info serializes");
            let txn = Txn::new()
                .when([Compare::create_revision(
                    self.leader_key.clone(),
                    CompareOp::Equal,
                    0,
                )])
                .and_then([TxnOp::put(
                    self.leader_key.clone(),
                    value,
                    Some(PutOptions::new().with_lease(id)),
                )]);
            let r = match c.txn(txn).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = c.lease_revoke(id).await;
                    return Err(unavailable(e));
                }
            };
            if !r.succeeded() {
                let _ = c.lease_revoke(id).await;
                return Ok(None);
            }
            let epoch = r.header().map(|h| h.revision()).ok_or_else(|| {
                LockError::Unavailable("a transaction answer without header".into())
            })?;
            let lease = Lease {
                id,
                epoch,
                lost: Arc::new(AtomicBool::new(false)),
            };
            self.keep_alive(lease.clone(), ttl_s);
            Ok(Some(lease))
        })
    }

    fn leader(&self) -> BoxFuture<'_, Result<Option<LeaderInfo>, LockError>> {
        Box::pin(async move {
            let Some(kv) = self.get(&self.leader_key).await? else {
                return Ok(None);
            };
            let mut info: LeaderInfo = serde_json::from_slice(kv.value()).map_err(|e| {
                LockError::Unavailable(format!("the leader record does not parse: {e}"))
            })?;
            info.epoch = kv.create_revision();
            Ok(Some(info))
        })
    }

    fn resign<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(async move {
            lease.lost.store(true, Ordering::Release);
            let mut c = self.client.clone();
            c.lease_revoke(lease.id).await.map_err(unavailable)?;
            Ok(())
        })
    }

    fn request_switchover<'a>(
        &'a self,
        to: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(async move {
            let mut c = self.client.clone();
            match to {
                Some(to) => {
                    c.put(self.switchover_key.clone(), to, None)
                        .await
                        .map_err(unavailable)?;
                }
                None => {
                    c.delete(self.switchover_key.clone(), None)
                        .await
                        .map_err(unavailable)?;
                }
            }
            Ok(())
        })
    }

    fn switchover(&self) -> BoxFuture<'_, Result<Option<String>, LockError>> {
        Box::pin(async move {
            Ok(self
                .get(&self.switchover_key)
                .await?
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
        })
    }
}
