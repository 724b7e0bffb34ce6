//! A fixed pool of worker threads for CPU-bound checks, awaited from async code.
//!
//! The SDK's verifier (`sdk::verify::pipeline`) and the node's partner catch-up
//! (`node::federation::sync`) check entry bundles on it; it lives below both so that the node
//! does not depend on the SDK.
//!
//! It is plain `std` threads fed by a channel rather than rayon: the unit of work is a whole
//! bundle (256 entries, about a millisecond), so work stealing buys nothing, and the pool has
//! to be awaited from async code, which a oneshot answer per job does simply.
//!
//! Invariants: a fixed number of threads, named, each running its `init` once before any job;
//! a job that panics loses its answer (its caller gets an error), not the worker; the workers
//! exit when the last clone of the pool is dropped; a job counts as outstanding from the moment
//! it is handed over until it has run and what it captured is dropped ([`Pool::wait_idle`]).

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed pool of worker threads for CPU-bound checks.
#[derive(Clone)]
pub struct Pool {
    jobs: Arc<Mutex<mpsc::Sender<Job>>>,
    threads: usize,
    /// Jobs handed over and not yet done (queued or running), and its change signal.
    outstanding: Arc<(Mutex<usize>, Condvar)>,
}

impl Pool {
    /// A pool of `threads` workers (at least one); they exit when the last clone is dropped.
    pub fn new(threads: usize) -> Pool {
        Pool::with_init(threads, "verify", || {})
    }

    /// As [`Pool::new`], with threads named `<name>-<i>` that each run `init` first (to lower
    /// their scheduling priority, for example).
    pub fn with_init(threads: usize, name: &str, init: impl Fn() + Send + Sync + 'static) -> Pool {
        let threads = threads.max(1);
        let init = Arc::new(init);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let outstanding = Arc::new((Mutex::new(0), Condvar::new()));
        for i in 0..threads {
            let (rx, init, outstanding) = (rx.clone(), init.clone(), outstanding.clone());
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    init();
                    loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        match job {
                            // A job that panics loses its answer (its caller sees that), not
                            // the worker.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                                // The job and what it captured are gone by now.
                                let (count, changed) = &*outstanding;
                                let mut n = count.lock().unwrap_or_else(|e| e.into_inner());
                                *n -= 1;
                                changed.notify_all();
                            }
                            Err(_) => return,
                        }
                    }
                })
                .expect("spawn a pool thread");
        }
        Pool {
            jobs: Arc::new(Mutex::new(tx)),
            threads,
            outstanding,
        }
    }

    /// A pool with one worker per core.
    pub fn per_core() -> Pool {
        Pool::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// The number of workers.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Waits until no job is queued or running, at most `limit`; whether it is so. A process
    /// calls it before it exits, once nothing can hand over new jobs, so that no worker is still
    /// inside a job (writing a database, say) while the process tears down under it.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let (count, changed) = &*self.outstanding;
        let mut n = count.lock().unwrap_or_else(|e| e.into_inner());
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            n = changed
                .wait_timeout(n, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Runs `f` on a worker and waits for its result without blocking the async task.
    ///
    /// # Panics
    /// When `f` panics.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.try_run(f).await.expect("a pool job does not panic")
    }

    /// As [`Pool::run`], with an error instead of a panic when `f` panicked.
    pub async fn try_run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        *self.outstanding.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.jobs
            .lock()
            .expect("pool lock")
            .send(job)
            .expect("the pool's workers live as long as the pool");
        rx.await.map_err(|_| "a pool job panicked".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn jobs_answer_and_a_panicking_job_costs_its_answer_not_the_worker() {
        let inits = Arc::new(AtomicUsize::new(0));
        let i = inits.clone();
        let pool = Pool::with_init(1, "test", move || {
            i.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(pool.threads(), 1);
        assert_eq!(pool.run(|| 2 + 2).await, 4);
        let name = pool
            .run(|| std::thread::current().name().map(str::to_owned))
            .await;
        assert_eq!(name.as_deref(), Some("test-0"));
        assert!(pool
            .try_run(|| -> u8 { panic!("a bad job") })
            .await
            .is_err());
        // The one worker survived the panic.
        assert_eq!(pool.run(|| 7).await, 7);
        assert_eq!(inits.load(Ordering::SeqCst), 1);
        assert_eq!(Pool::new(0).threads(), 1, "at least one worker");
        // A job's answer is sent from inside it, so the worker may count it done a moment
        // after its caller has the answer: wait for that, within a bound (a panicked job that
        // was never counted done would keep this waiting past it).
        assert!(
            pool.wait_idle(Duration::from_secs(10)),
            "the panicked job is counted done"
        );
    }

    #[tokio::test]
    async fn waiting_idle_waits_for_queued_and_running_jobs_and_what_they_hold() {
        let pool = Pool::new(1);
        assert!(pool.wait_idle(Duration::ZERO));
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let held = Arc::new(());
        let weak = Arc::downgrade(&held);
        // One job blocked on the worker, one queued behind it holding `held`; nobody awaits
        // their answers (as when the async runtime that handed them over is gone).
        let p = pool.clone();
        let blocked = tokio::spawn(async move { p.run(move || go_rx.recv().ok()).await });
        let p = pool.clone();
        let queued = tokio::spawn(async move {
            p.run(move || {
                std::thread::sleep(Duration::from_millis(50));
                drop(held);
            })
            .await
        });
        while *pool.outstanding.0.lock().unwrap() < 2 {
            tokio::task::yield_now().await;
        }
        blocked.abort();
        queued.abort();
        assert!(
            !pool.wait_idle(Duration::from_millis(100)),
            "a job is blocked"
        );
        go_tx.send(()).unwrap();
        assert!(pool.wait_idle(Duration::from_secs(10)));
        assert_eq!(
            weak.strong_count(),
            0,
            "the queued job's captures are dropped"
        );
    }
}
