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
//! exit when the last clone of the pool is dropped.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed pool of worker threads for CPU-bound checks.
#[derive(Clone)]
pub struct Pool {
    jobs: Arc<Mutex<mpsc::Sender<Job>>>,
    threads: usize,
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
        for i in 0..threads {
            let (rx, init) = (rx.clone(), init.clone());
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
    }
}
