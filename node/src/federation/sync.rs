//! Sync (spec/federation.md §3): one task per pinned partner pulls its checkpoint, proves it
//! consistent with the accepted one, fetches the entries through C2SP entry bundles, and hands
//! them to [`ledger_store::mirror::Mirror`], which verifies, replays and stores them.
//!
//! Catching up is a pipeline of chunks ([`CHUNK_ENTRIES_MAX`] entries, one synced batch each):
//! while one chunk is replayed on top of the one before it (staged in the mirror), that one is
//! written, and the next is fetched (`BUNDLES_IN_FLIGHT` bundles at once) and hashed and
//! decoded in parts on the catch-up pool. A chunk counts as verified once its write landed. The pool's threads run at a lower
//! scheduling priority ([`CATCHUP_NICE`]) than the sequencer and the HTTP workers, and while the
//! node's own log grows the catch-up pauses between chunks ([`CATCHUP_YIELD_FACTOR`]), so a
//! lagging mirror uses what the node's own writes leave idle instead of competing with them.
//!
//! A failure that proves misbehaviour (two conflicting signed checkpoints, an invalid entry
//! under a valid checkpoint) becomes evidence and freezes the partner; a failure that only
//! shows what this node was served (a bad signature, a shrink, a bad proof, entries that do not
//! match the root) is recorded as unproven evidence and retried; any other failure (the partner
//! is down, slow, or answers garbage) is reported in `last_error`. Every retry backs off
//! exponentially. The task never touches the sequencer.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ledger::checkpoint::Checkpoint;
use ledger::merkle::Hash;
use ledger_store::mirror::{CheckedChunk, Mirror, MirrorError, StagedChunk, CHUNK_ENTRIES_MAX};

use super::client::PeerClient;
use super::{Federation, Partner};

/// The C2SP tile index encoding (`x001/x234/067`), from the tiles module.
pub use ledger::tiles::tile_index_path;

// The client's helpers, at the paths other modules have used.
pub use super::client::{describe, read_limited};

/// Entries per C2SP entry bundle.
const BUNDLE: u64 = 256;
/// Bundles fetched at once.
const BUNDLES_IN_FLIGHT: usize = 16;
/// The catch-up pool's threads' nice value (Linux; 0 is the node's own, 19 the lowest).
pub const CATCHUP_NICE: i32 = 10;
/// While the node's own log grows, the catch-up pauses after each chunk for this many times
/// the chunk's replay-and-store time (a duty cycle of 1 in 1 + this), so that its synced
/// batches and CPU leave the node's own writes their pace; when the node is idle it runs
/// flat out.
pub const CATCHUP_YIELD_FACTOR: u32 = 4;

static CATCHUP_POOL: std::sync::OnceLock<workpool::Pool> = std::sync::OnceLock::new();

/// Waits, at most `limit`, until no chunk is queued on or being stored by the catch-up pool;
/// whether it is so. The node calls it once its async runtime is gone (nothing can hand over
/// a chunk any more) and before the process exits: a process that exits while a pool thread
/// is inside RocksDB tears down what RocksDB still uses, and aborts.
pub fn wait_for_catchup(limit: Duration) -> bool {
    CATCHUP_POOL.get().is_none_or(|p| p.wait_idle(limit))
}

/// The pool that checks, replays and stores partners' chunks: one thread per core, at a lower
/// priority than the node's own work.
fn catchup_pool() -> &'static workpool::Pool {
    CATCHUP_POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        workpool::Pool::with_init(threads, "mirror", || {
            #[cfg(target_os = "linux")]
            // SAFETY: setpriority on this thread's own id has no memory effects; a failure
            // only leaves the thread at the node's priority.
            unsafe {
                let tid = libc::gettid();
                libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, CATCHUP_NICE);
            }
        })
    })
}
/// Largest answer read from a partner: a full bundle of the largest entries.
pub const RESPONSE_BYTES_MAX: usize = 256 * (2 + ledger::entry::ENTRY_BYTES_MAX);
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why a round stopped.
#[derive(Debug)]
pub enum RoundError {
    /// Evidence: stored, and the partner frozen.
    Misbehaviour(ledger_store::mirror::Misbehaviour),
    /// Anything else; retried.
    Other(String),
}

impl From<String> for RoundError {
    fn from(s: String) -> Self {
        RoundError::Other(s)
    }
}

/// Starts the sync task of `partner` (a no-op loop while it is unpinned or frozen).
pub fn spawn(fed: Arc<Federation>, partner: Arc<Partner>) {
    tokio::spawn(async move {
        let interval = Duration::from_millis(fed.settings.sync_interval_ms);
        let mut backoff = BACKOFF_MIN;
        loop {
            if partner.retired.load(Ordering::Acquire) {
                return;
            }
            if partner.mirror.is_none() || partner.frozen.load(Ordering::Acquire) {
                tokio::time::sleep(interval).await;
                continue;
            }
            match round(&fed, &partner).await {
                Ok(progressed) => {
                    backoff = BACKOFF_MIN;
                    {
                        let mut s = partner.status.lock().expect("status lock");
                        s.last_error = None;
                        s.last_sync_ms = Some(crate::sequencer::now().get());
                    }
                    fed.publish_metrics(&partner);
                    if !progressed {
                        tokio::time::sleep(interval).await;
                    }
                }
                Err(RoundError::Misbehaviour(m)) => {
                    // Proven misbehaviour freezes the partner (the loop then idles); anything
                    // else is recorded and retried with backoff, like any failed round.
                    if let Err(e) = fed.record_evidence(&partner, &m) {
                        tracing::error!(partner = %partner.brand, error = %e, "cannot store evidence");
                    }
                    if !m.proven() {
                        fed.metrics.sync_failed(partner.brand.as_str());
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                Err(RoundError::Other(e)) => {
                    fed.metrics.sync_failed(partner.brand.as_str());
                    tracing::debug!(partner = %partner.brand, error = %e, "sync round failed");
                    partner.status.lock().expect("status lock").last_error = Some(e);
                    fed.publish_metrics(&partner);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    });
}

/// A signed GET to a partner; the body, or an error naming the URL and status.
pub async fn get(fed: &Federation, partner: &Partner, path: &str) -> Result<Vec<u8>, String> {
    get_limited(fed, partner, path, RESPONSE_BYTES_MAX).await
}

/// A signed GET whose answer may hold at most `max` bytes. An error names the path, the status
/// or a fixed description, never the answer's content ([`super::client`]).
pub async fn get_limited(
    fed: &Federation,
    partner: &Partner,
    path: &str,
    max: usize,
) -> Result<Vec<u8>, String> {
    PeerClient::new(fed, partner)
        .get(path, max)
        .await
        .map_err(|e| format!("GET {path}: {e}"))
}

/// Parses an entry bundle of exactly `count` entries (C2SP tlog-tiles framing, read by
/// [`ledger::tiles::bundle_entries`]).
pub fn parse_bundle(body: &[u8], count: usize) -> Result<Vec<Vec<u8>>, String> {
    let out = ledger::tiles::bundle_entries(body)
        .map(|e| e.map(<[u8]>::to_vec).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    if out.len() != count {
        return Err(format!(
            "entry bundle holds {} entries, not {count}",
            out.len()
        ));
    }
    Ok(out)
}

#[derive(serde::Deserialize)]
struct ConsistencyAnswer {
    old: u64,
    new: u64,
    proof: Vec<String>,
}

async fn consistency(
    fed: &Federation,
    partner: &Partner,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, String> {
    let body = get(
        fed,
        partner,
        &format!("/v1/log/proof/consistency?old={old}&new={new}"),
    )
    .await?;
    let a: ConsistencyAnswer =
        serde_json::from_slice(&body).map_err(|e| format!("consistency proof: {e}"))?;
    if a.old != old || a.new != new || a.proof.len() > 64 {
        return Err("consistency proof for other sizes".into());
    }
    a.proof
        .iter()
        .map(|h| {
            hex::decode(h)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| "consistency proof hash is not 32 bytes of hex".to_string())
        })
        .collect()
}

/// Fetches entries `start..end` (within one checkpoint of size `size`) through entry bundles.
async fn fetch_entries(
    fed: &Arc<Federation>,
    partner: &Arc<Partner>,
    start: u64,
    end: u64,
    size: u64,
) -> Result<Vec<Vec<u8>>, String> {
    let first = start / BUNDLE;
    let last = (end - 1) / BUNDLE;
    let mut set = tokio::task::JoinSet::new();
    let mut bundles: Vec<Option<Vec<Vec<u8>>>> = vec![None; (last - first + 1) as usize];
    let mut next = first;
    let mut running = 0;
    loop {
        while running < BUNDLES_IN_FLIGHT && next <= last {
            let b = next;
            next += 1;
            running += 1;
            let (fed, partner) = (fed.clone(), partner.clone());
            set.spawn(async move {
                let width = (size - b * BUNDLE).min(BUNDLE);
                let path = if width == BUNDLE {
                    format!("/tile/entries/{}", tile_index_path(b))
                } else {
                    format!("/tile/entries/{}.p/{width}", tile_index_path(b))
                };
                let body = get(&fed, &partner, &path).await?;
                Ok::<_, String>((b, parse_bundle(&body, width as usize)?))
            });
        }
        match set.join_next().await {
            None => break,
            Some(r) => {
                running -= 1;
                let (b, entries) = r.map_err(|e| e.to_string())??;
                bundles[(b - first) as usize] = Some(entries);
            }
        }
    }
    let mut out = Vec::with_capacity((end - start) as usize);
    for (i, b) in bundles.into_iter().enumerate() {
        let base = (first + i as u64) * BUNDLE;
        for (j, e) in b.ok_or("a bundle is missing")?.into_iter().enumerate() {
            let idx = base + j as u64;
            if idx >= start && idx < end {
                out.push(e);
            }
        }
    }
    Ok(out)
}

/// One sync round; `Ok(true)` when the mirror grew.
pub async fn round(fed: &Arc<Federation>, partner: &Arc<Partner>) -> Result<bool, RoundError> {
    let _round = partner.round_lock.lock().await;
    if partner.retired.load(Ordering::Acquire) || partner.frozen.load(Ordering::Acquire) {
        return Ok(false);
    }
    let mirror = partner.mirror.clone().ok_or("unpinned".to_string())?;
    let note = String::from_utf8(
        get_limited(
            fed,
            partner,
            "/checkpoint",
            ledger::checkpoint::MAX_NOTE_SIZE,
        )
        .await?,
    )
    .map_err(|_| "checkpoint is not UTF-8".to_string())?;
    let (checked, accepted_size) = {
        let m = mirror.lock().expect("mirror lock");
        (
            m.check_checkpoint(&note),
            m.accepted().map_or(0, |a| a.checkpoint.size),
        )
    };
    let cp: Checkpoint = match checked.map_err(RoundError::Misbehaviour)? {
        None => {
            partner.status.lock().expect("status lock").partner_size = accepted_size;
            return Ok(false);
        }
        Some(cp) => cp,
    };
    partner.status.lock().expect("status lock").partner_size = cp.size;
    if accepted_size > 0 {
        let proof = consistency(fed, partner, accepted_size, cp.size).await?;
        mirror
            .lock()
            .expect("mirror lock")
            .check_consistency(&cp, &note, &proof)
            .map_err(RoundError::Misbehaviour)?;
    }
    let result = catch_up(
        fed,
        partner,
        &mirror,
        Arc::new(cp),
        Arc::new(note),
        accepted_size,
    )
    .await;
    if result.is_ok() {
        // What this node cosigned as a witness must agree with what its mirror verified: a
        // partner showing one history to the witness and another to sync is caught here.
        if let Some(m) = super::witness::check_split_view(fed, partner).await {
            return Err(RoundError::Misbehaviour(m));
        }
    }
    result
}

/// Verifies, replays and stores the entries up to `cp` (whose signed note is `note`, already
/// checked against the accepted checkpoint of size `accepted_size`); `Ok(true)` when the
/// mirror grew. However it ends, the chunk being written lands (or is dropped) first.
async fn catch_up(
    fed: &Arc<Federation>,
    partner: &Arc<Partner>,
    mirror: &Arc<std::sync::Mutex<Mirror>>,
    cp: Arc<Checkpoint>,
    note: Arc<String>,
    accepted_size: u64,
) -> Result<bool, RoundError> {
    // The next chunk is fetched while the current one is verified and replayed, and the one
    // before it written.
    let mut prefetch: Option<(u64, tokio::task::JoinHandle<Result<Chunk, String>>)> = None;
    let mut writing: Option<Writing> = None;
    let mut appended = false;
    let result = loop {
        if partner.retired.load(Ordering::Acquire) || partner.frozen.load(Ordering::Acquire) {
            break Ok(false);
        }
        let start = mirror.lock().expect("mirror lock").verified_size();
        if start >= cp.size {
            // Everything verified has landed before the target is judged covered.
            if let Err(e) = land(fed, partner, mirror, writing.take()).await {
                break Err(e);
            }
            if accepted_size < cp.size && !appended {
                // Entries verified before a restart (against a larger note) cover it.
                let (m, cp2, note2) = (mirror.clone(), cp.clone(), note.clone());
                let r = tokio::task::spawn_blocking(move || {
                    m.lock().expect("mirror lock").accept_covered(&cp2, &note2)
                })
                .await;
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => break Err(map_mirror_error(e)),
                    Err(e) => break Err(RoundError::Other(e.to_string())),
                }
            }
            break Ok(appended);
        }
        let chunk = match prefetch.take() {
            Some((s, h)) if s == start => match h.await {
                Ok(c) => c,
                Err(e) => break Err(RoundError::Other(e.to_string())),
            },
            other => {
                if let Some((_, h)) = other {
                    h.abort();
                }
                fetch_chunk(fed.clone(), partner.clone(), start, cp.size).await
            }
        };
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => break Err(RoundError::Other(e)),
        };
        let end = start + chunk.entries.len() as u64;
        if end < cp.size {
            let (f, p) = (fed.clone(), partner.clone());
            let size = cp.size;
            prefetch = Some((end, tokio::spawn(fetch_chunk(f, p, end, size))));
        }
        let (m, cp2, note2) = (mirror.clone(), cp.clone(), note.clone());
        let own_size = fed.shared.checkpoint().size;
        let began = std::time::Instant::now();
        let staged = catchup_pool()
            .try_run(move || {
                m.lock().expect("mirror lock").stage_checked(
                    start,
                    chunk.entries,
                    &cp2,
                    &note2,
                    &chunk.proof,
                )
            })
            .await;
        // The chunk before lands before this one is written (a failed write drops this one).
        if let Err(e) = land(fed, partner, mirror, writing.take()).await {
            break Err(e);
        }
        let staged = match staged {
            Ok(Ok(staged)) => staged,
            Ok(Err(e)) => break Err(map_mirror_error(e)),
            Err(panicked) => break Err(RoundError::Other(panicked)),
        };
        writing = Some(write(mirror.clone(), partner.clone(), staged));
        appended = true;
        if fed.shared.checkpoint().size != own_size && end < cp.size {
            // The node is writing: yield (the next chunk is fetched and checked meanwhile).
            tokio::time::sleep(began.elapsed() * CATCHUP_YIELD_FACTOR).await;
        }
    };
    if let Some((_, h)) = prefetch {
        h.abort();
    }
    // However the round ends, the chunk being written lands (or is dropped) first.
    match (result, land(fed, partner, mirror, writing.take()).await) {
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        (Ok(progressed), Ok(())) => Ok(progressed),
    }
}

/// A staged chunk being written on the catch-up pool; its job lands it in the mirror (or drops
/// everything staged, when the write or the landing failed) and answers how.
type Writing = tokio::task::JoinHandle<Result<Result<u64, MirrorError>, String>>;

/// Writes `staged` on the catch-up pool and lands it.
fn write(
    mirror: Arc<std::sync::Mutex<Mirror>>,
    partner: Arc<Partner>,
    staged: StagedChunk,
) -> Writing {
    tokio::spawn(catchup_pool().try_run(move || {
        let n = staged.end() - staged.start();
        let written = staged.write();
        let mut m = mirror.lock().expect("mirror lock");
        let landed = written.and_then(|()| m.landed(staged));
        let landed = match landed {
            Err(e) => m.discard_staged().and(Err(e)),
            ok => ok,
        };
        partner.verified.store(m.size(), Ordering::Release);
        landed.map(|()| n)
    }))
}

/// Waits for the chunk being written, if any, and counts it.
async fn land(
    fed: &Arc<Federation>,
    partner: &Arc<Partner>,
    mirror: &Arc<std::sync::Mutex<Mirror>>,
    writing: Option<Writing>,
) -> Result<(), RoundError> {
    let Some(w) = writing else {
        return Ok(());
    };
    let unfinished = match w.await {
        Ok(Ok(Ok(n))) => {
            fed.metrics.mirrored(partner.brand.as_str(), n);
            fed.publish_metrics(partner);
            return Ok(());
        }
        // The job dropped what was staged itself.
        Ok(Ok(Err(e))) => return Err(map_mirror_error(e)),
        Ok(Err(panicked)) => panicked,
        Err(e) => e.to_string(),
    };
    // The job did not finish: what it staged will never land.
    let m = mirror.clone();
    let _ =
        tokio::task::spawn_blocking(move || m.lock().expect("mirror lock").discard_staged()).await;
    Err(RoundError::Other(unfinished))
}

/// Entries of one chunk, hashed and decoded, and the consistency proof from its end to the
/// target size.
struct Chunk {
    entries: CheckedChunk,
    proof: Vec<Hash>,
}

async fn fetch_chunk(
    fed: Arc<Federation>,
    partner: Arc<Partner>,
    start: u64,
    size: u64,
) -> Result<Chunk, String> {
    let end = (start + CHUNK_ENTRIES_MAX).min(size);
    let entries = fetch_entries(&fed, &partner, start, end, size).await?;
    let proof = if end < size {
        consistency(&fed, &partner, end, size).await?
    } else {
        Vec::new()
    };
    // Hashed and decoded in one part per pool thread; the mirror judges the whole chunk.
    let pool = catchup_pool();
    let per = entries.len().div_ceil(pool.threads()).max(1);
    let mut parts = Vec::new();
    let mut rest = entries;
    while !rest.is_empty() {
        let tail = rest.split_off(per.min(rest.len()));
        let part = std::mem::replace(&mut rest, tail);
        parts.push(tokio::spawn(
            pool.try_run(move || CheckedChunk::check(part)),
        ));
    }
    let mut checked = Vec::with_capacity(parts.len());
    for p in parts {
        checked.push(p.await.map_err(|e| e.to_string())??);
    }
    let entries = CheckedChunk::concat(checked);
    Ok(Chunk { entries, proof })
}

fn map_mirror_error(e: MirrorError) -> RoundError {
    match e {
        MirrorError::Misbehaviour(m) => RoundError::Misbehaviour(m),
        other => RoundError::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_must_hold_the_expected_count() {
        let mut b = vec![0, 2, b'h', b'i', 0, 1, b'x'];
        assert_eq!(
            parse_bundle(&b, 2).unwrap(),
            vec![b"hi".to_vec(), b"x".to_vec()]
        );
        assert!(parse_bundle(&b, 3).is_err());
        b.push(0);
        assert!(parse_bundle(&b, 2).is_err());
    }
}
