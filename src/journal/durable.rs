//! The journal writer's durable position and the requests waiting for it.
//!
//! Why not a broadcast ("watch") channel: every group commit would wake every waiting
//! request, though only those whose entries the batch covered can answer; at 32 requests in
//! flight and a dozen entries per sync that is twenty useless wake-ups per sync, each a task
//! scheduled and polled on the cores the requests need. Here each waiter is kept under the
//! position it needs, and a published position wakes exactly the waiters at or below it (a
//! failure wakes all), in the order of (position, arrival), so a simulated run wakes them
//! in the same order every time.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use super::Durability;

/// The durable position one writer publishes, shared with its handles.
pub(super) struct DurablePosition {
    inner: Mutex<Inner>,
}

struct Inner {
    now: Durability,
    /// Waiting requests by (position they need, arrival number).
    waiters: BTreeMap<(u64, u64), Waker>,
    arrivals: u64,
}

impl DurablePosition {
    /// Nothing written yet: entries below `next` are durable.
    pub(super) fn new(next: u64) -> Self {
        let now = Durability { next, failed: None, syncs: 0 };
        DurablePosition { inner: Mutex::new(Inner { now, waiters: BTreeMap::new(), arrivals: 0 }) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update leaves the state whole; a panic elsewhere must not wedge the waiters.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current position and failure, if any.
    pub(super) fn snapshot(&self) -> Durability {
        self.lock().now.clone()
    }

    /// One group commit made every entry below `next` durable: wakes the waiters it satisfies.
    pub(super) fn advance(&self, next: u64) {
        let woken = {
            let mut inner = self.lock();
            debug_assert!(next >= inner.now.next, "the durable position never goes back");
            inner.now.next = next;
            inner.now.syncs += 1;
            let still_waiting = inner.waiters.split_off(&(next.saturating_add(1), 0));
            std::mem::replace(&mut inner.waiters, still_waiting)
        };
        woken.into_values().for_each(Waker::wake);
    }

    /// The writer stopped (`reason`) and will write nothing more: wakes every waiter. The
    /// first reason stays.
    pub(super) fn fail(&self, reason: String) {
        let woken = {
            let mut inner = self.lock();
            inner.now.failed.get_or_insert(reason);
            std::mem::take(&mut inner.waiters)
        };
        woken.into_values().for_each(Waker::wake);
    }

    /// Resolves, with the state then, once every entry below `end` is durable or the writer
    /// failed.
    pub(super) fn reached(&self, end: u64) -> Reached<'_> {
        Reached { position: self, end, key: None }
    }
}

/// The future of [`DurablePosition::reached`]; deregisters itself when dropped.
pub(super) struct Reached<'a> {
    position: &'a DurablePosition,
    end: u64,
    /// Where this waiter is registered, once it waited.
    key: Option<(u64, u64)>,
}

impl Future for Reached<'_> {
    type Output = Durability;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Durability> {
        let this = self.get_mut();
        let mut inner = this.position.lock();
        if inner.now.next >= this.end || inner.now.failed.is_some() {
            if let Some(key) = this.key.take() {
                inner.waiters.remove(&key);
            }
            return Poll::Ready(inner.now.clone());
        }
        let key = match this.key {
            Some(key) => key,
            None => {
                inner.arrivals += 1;
                let key = (this.end, inner.arrivals);
                this.key = Some(key);
                key
            }
        };
        match inner.waiters.get_mut(&key) {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            Some(waker) => waker.clone_from(cx.waker()),
            None => {
                inner.waiters.insert(key, cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

impl Drop for Reached<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.position.lock().waiters.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    /// Counts its wake-ups.
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll(fut: &mut Reached<'_>, counter: &Arc<CountingWaker>) -> Poll<Durability> {
        let waker = Waker::from(counter.clone());
        Pin::new(fut).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn a_sync_wakes_only_the_waiters_it_covers() {
        let position = DurablePosition::new(10);
        let counters: Vec<_> = (0..3).map(|_| Arc::new(CountingWaker(AtomicUsize::new(0)))).collect();
        let mut waits: Vec<_> = [12, 15, 20].into_iter().map(|end| position.reached(end)).collect();
        for (w, c) in waits.iter_mut().zip(&counters) {
            assert!(poll(w, c).is_pending());
        }
        position.advance(15);
        let woken: Vec<usize> = counters.iter().map(|c| c.0.load(Ordering::SeqCst)).collect();
        assert_eq!(woken, vec![1, 1, 0], "entries below 15 cover the waiters for 12 and 15, not 20");
        assert!(matches!(poll(&mut waits[0], &counters[0]), Poll::Ready(Durability { next: 15, syncs: 1, .. })));
        assert!(poll(&mut waits[2], &counters[2]).is_pending());
        assert_eq!(position.lock().waiters.keys().map(|k| k.0).collect::<Vec<_>>(), vec![20], "woken waiters are no longer registered");
        drop(waits);
        assert!(position.lock().waiters.is_empty(), "dropped waiters deregister");
    }

    #[test]
    fn a_failure_wakes_every_waiter_and_keeps_the_first_reason() {
        let position = DurablePosition::new(0);
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let mut wait = position.reached(u64::MAX);
        assert!(poll(&mut wait, &counter).is_pending());
        position.fail("fenced".into());
        position.fail("journal writer closed".into());
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        match poll(&mut wait, &counter) {
            Poll::Ready(d) => assert_eq!((d.next, d.failed.as_deref()), (0, Some("fenced"))),
            Poll::Pending => panic!("a failed writer must release its waiters"),
        }
        // Reached already: resolves at once, nothing registered.
        assert!(poll(&mut position.reached(0), &counter).is_ready());
        assert!(position.lock().waiters.is_empty());
    }
}
