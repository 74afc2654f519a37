//! Coalesced refreshes: any number of requests for "re-read the state" that arrive while one
//! re-read runs are served by a single next one.
//!
//! `Refresh` is open to every user on the bus, and a re-read runs the ops archive's `status`
//! task under the lock the firmware operations take. Without coalescing, a flood of `Refresh`
//! calls queued one re-read per call in front of root's `Validate` or `Install`; with it, at
//! most one re-read runs and at most one more is pending, whatever the number of callers, so a
//! flood costs root's calls at most one re-read.
//!
//! Every caller still gets what it asked for: it returns only after a re-read that *started*
//! after its request (so it sees every change made before it asked).

use std::future::Future;
use std::sync::Mutex;

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct State {
    /// Requests made so far (a generation number).
    requested: u64,
    /// Every request up to this one has been served by a finished run.
    served: u64,
    /// A run is in progress.
    running: bool,
}

/// Runs one piece of work on behalf of every caller waiting for it.
#[derive(Debug, Default)]
pub struct Coalescer {
    state: Mutex<State>,
    done: Notify,
}

impl Coalescer {
    /// A coalescer with nothing requested yet.
    pub fn new() -> Self {
        Coalescer::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns once a run of `work` (this caller's or another's) that started after this call
    /// has finished. Only one run is in progress at any time.
    pub async fn run<F, Fut>(&self, work: F)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ()>,
    {
        let mine = {
            let mut st = self.state();
            st.requested += 1;
            st.requested
        };
        loop {
            // Registered before the state is checked, so a wake-up in between is not lost.
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let covers = {
                let mut st = self.state();
                if st.served >= mine {
                    return;
                }
                if st.running {
                    None
                } else {
                    st.running = true;
                    Some(st.requested)
                }
            };
            if let Some(covers) = covers {
                work().await;
                let mut st = self.state();
                st.served = st.served.max(covers);
                st.running = false;
                drop(st);
                self.done.notify_waiters();
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[tokio::test]
    async fn a_flood_is_served_by_a_few_runs_and_nobody_gets_a_stale_one() {
        let c = Arc::new(Coalescer::new());
        let runs = Arc::new(AtomicU64::new(0));
        // What the state was when the last run started, and the state callers changed.
        let state = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(AtomicU64::new(0));
        let mut callers = Vec::new();
        for i in 1..=200u64 {
            let (c, runs, state, seen) = (c.clone(), runs.clone(), state.clone(), seen.clone());
            callers.push(tokio::spawn(async move {
                // The caller changes the state, then asks for a re-read that must see it.
                state.fetch_max(i, Ordering::SeqCst);
                c.run(|| async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    seen.store(state.load(Ordering::SeqCst), Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                })
                .await;
                assert!(
                    seen.load(Ordering::SeqCst) >= i,
                    "caller {i} was answered by a run that started before it asked"
                );
            }));
        }
        for c in callers {
            c.await.unwrap();
        }
        let runs = runs.load(Ordering::SeqCst);
        // Without coalescing: 200 runs. With it: one per wave of waiting callers.
        assert!(runs <= 20, "{runs} runs for 200 concurrent requests");
        assert!(runs >= 1);
    }

    #[tokio::test]
    async fn sequential_requests_each_get_a_run() {
        let c = Coalescer::new();
        let runs = AtomicU64::new(0);
        for _ in 0..3 {
            c.run(|| async {
                runs.fetch_add(1, Ordering::SeqCst);
            })
            .await;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }
}
