//! Requests coalesced: the creates (and, apart, the completions) a client's tasks ask for
//! at the same time go to the master together, in one `CreateFiles` (`CompleteFiles`)
//! call, the way the master's journal commits the entries that arrive together in one sync.
//!
//! There is no timer and no added wait: a request finding no batch on its way starts one at
//! once; requests arriving while [`MAX_CALLS_IN_FLIGHT`] batches are on their way queue up
//! and leave together when one returns. [`Coalescer`] is the queue (pure); the client's
//! flusher tasks drive it (`FileSystem::coalesced`).
//!
//! A master of an older version does not know the batched calls: once one is refused as
//! unsupported, [`Coalescer::refuse_batching`] sends every later request alone for
//! [`BATCHING_REFUSAL_MS`], then a batched call is tried again (the master may have been
//! upgraded meanwhile).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Most requests in one batched call (the master takes up to `MAX_REQUESTS_PER_CALL`,
/// 1,024).
pub const MAX_REQUESTS_PER_BATCH: usize = 256;
/// Most batched calls of one kind one client has on their way at once.
pub const MAX_CALLS_IN_FLIGHT: usize = 2;
/// Most requests of one kind queued; past this a request goes out in a call of its own.
pub const MAX_QUEUED_REQUESTS: usize = 4096;
/// How long requests go alone after the master refused a batched call as unsupported.
pub const BATCHING_REFUSAL_MS: u64 = 10_000;

/// The queue of requests waiting for a call, and how many flushers are sending them.
pub struct Coalescer<T> {
    state: Mutex<QueueState<T>>,
    max_batch: usize,
    max_flushers: usize,
    max_queued: usize,
}

struct QueueState<T> {
    waiting: VecDeque<T>,
    flushers: usize,
    /// Until when requests go alone: the master refused a batched call as unsupported.
    batching_refused_until: Option<Instant>,
}

/// What became of a queued item.
#[derive(Debug, PartialEq, Eq)]
pub enum Queued<T> {
    /// Queued; the caller starts a flusher (fewer than the most were running).
    StartFlusher,
    /// Queued; a running flusher will take it.
    Taken,
    /// The queue is full, or the master takes no batched calls: the caller sends the item
    /// alone.
    Alone(T),
}

impl<T> Coalescer<T> {
    /// A queue with tachyon's limits.
    pub fn new() -> Self {
        Self::with_limits(MAX_REQUESTS_PER_BATCH, MAX_CALLS_IN_FLIGHT, MAX_QUEUED_REQUESTS)
    }

    /// A queue with the given limits (each at least 1).
    pub fn with_limits(max_batch: usize, max_flushers: usize, max_queued: usize) -> Self {
        Coalescer {
            state: Mutex::new(QueueState { waiting: VecDeque::new(), flushers: 0, batching_refused_until: None }),
            max_batch: max_batch.max(1),
            max_flushers: max_flushers.max(1),
            max_queued: max_queued.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState<T>> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `item` behind the ones waiting (at `now`).
    pub fn push(&self, item: T, now: Instant) -> Queued<T> {
        let mut st = self.lock();
        if st.refused_at(now) || st.waiting.len() >= self.max_queued {
            return Queued::Alone(item);
        }
        st.waiting.push_back(item);
        if st.flushers < self.max_flushers {
            st.flushers += 1;
            Queued::StartFlusher
        } else {
            Queued::Taken
        }
    }

    /// The next batch for a flusher: the oldest waiting items, at most the batch limit.
    /// `None` when nothing waits; the flusher has then retired (counted out under the same
    /// lock, so an item queued later starts a new one).
    pub fn next_batch(&self) -> Option<Vec<T>> {
        let mut st = self.lock();
        if st.waiting.is_empty() {
            debug_assert!(st.flushers > 0, "a flusher asked for work while none was counted");
            st.flushers = st.flushers.saturating_sub(1);
            return None;
        }
        let n = st.waiting.len().min(self.max_batch);
        Some(st.waiting.drain(..n).collect())
    }

    /// Every request goes alone for [`BATCHING_REFUSAL_MS`] from `now` (the master refused a
    /// batched call); the items already queued are still handed out by
    /// [`Coalescer::next_batch`]. True unless a refusal was in force already.
    pub fn refuse_batching(&self, now: Instant) -> bool {
        let mut st = self.lock();
        let news = !st.refused_at(now);
        if news {
            st.batching_refused_until = Some(now + Duration::from_millis(BATCHING_REFUSAL_MS));
        }
        news
    }

    /// Whether requests go alone at `now`.
    pub fn batching_refused(&self, now: Instant) -> bool {
        self.lock().refused_at(now)
    }
}

impl<T> QueueState<T> {
    fn refused_at(&self, now: Instant) -> bool {
        self.batching_refused_until.is_some_and(|until| now < until)
    }
}

impl<T> Default for Coalescer<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ms` milliseconds after a fixed start.
    fn at(ms: u64) -> Instant {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *START.get_or_init(Instant::now) + Duration::from_millis(ms)
    }

    #[test]
    fn a_lone_item_starts_a_flusher_that_takes_it_then_retires() {
        let q = Coalescer::with_limits(4, 2, 100);
        assert_eq!(q.push(1, at(0)), Queued::StartFlusher);
        assert_eq!(q.next_batch(), Some(vec![1]));
        assert_eq!(q.next_batch(), None);
        // Retired: the next item starts a flusher again.
        assert_eq!(q.push(2, at(0)), Queued::StartFlusher);
    }

    #[test]
    fn items_arriving_while_flushers_run_leave_together_oldest_first_within_the_batch_limit() {
        let q = Coalescer::with_limits(3, 2, 100);
        assert_eq!(q.push(0, at(0)), Queued::StartFlusher);
        assert_eq!(q.next_batch(), Some(vec![0]));
        assert_eq!(q.push(1, at(0)), Queued::StartFlusher);
        assert_eq!(q.next_batch(), Some(vec![1]));
        // Two flushers are on their way: the rest wait for one of them.
        for i in 2..9 {
            assert_eq!(q.push(i, at(0)), Queued::Taken);
        }
        assert_eq!(q.next_batch(), Some(vec![2, 3, 4]));
        assert_eq!(q.next_batch(), Some(vec![5, 6, 7]));
        assert_eq!(q.next_batch(), Some(vec![8]));
        // Both retire; then the count is back to none running.
        assert_eq!(q.next_batch(), None);
        assert_eq!(q.next_batch(), None);
        assert_eq!(q.push(9, at(0)), Queued::StartFlusher);
    }

    #[test]
    fn a_full_queue_hands_the_item_back() {
        let q = Coalescer::with_limits(2, 1, 2);
        assert_eq!(q.push(1, at(0)), Queued::StartFlusher);
        assert_eq!(q.push(2, at(0)), Queued::Taken);
        assert_eq!(q.push(3, at(0)), Queued::Alone(3));
        assert_eq!(q.next_batch(), Some(vec![1, 2]));
        assert_eq!(q.push(3, at(0)), Queued::Taken);
    }

    #[test]
    fn once_batching_is_refused_new_items_go_alone_for_a_while_then_a_batch_is_tried_again() {
        let q = Coalescer::with_limits(4, 1, 100);
        assert_eq!(q.push(1, at(0)), Queued::StartFlusher);
        assert_eq!(q.push(2, at(0)), Queued::Taken);
        assert!(!q.batching_refused(at(0)));
        assert!(q.refuse_batching(at(0)), "the first refusal is news");
        assert!(!q.refuse_batching(at(5)), "a second while it holds is not");
        assert!(q.batching_refused(at(5)));
        assert_eq!(q.push(3, at(5)), Queued::Alone(3));
        // Queued before the refusal: still handed out (the flusher sends them alone).
        assert_eq!(q.next_batch(), Some(vec![1, 2]));
        assert_eq!(q.next_batch(), None);
        let end = BATCHING_REFUSAL_MS;
        assert_eq!(q.push(4, at(end - 1)), Queued::Alone(4));
        // Then the master is asked again (it may have been upgraded).
        assert!(!q.batching_refused(at(end)));
        assert_eq!(q.push(5, at(end)), Queued::StartFlusher);
        assert_eq!(q.next_batch(), Some(vec![5]));
        assert!(q.refuse_batching(at(end)), "a refusal after the last ran out is news again");
        assert_eq!(q.push(6, at(end)), Queued::Alone(6));
    }
}
