//! A single-value broadcast channel ("watch") whose wake-ups happen in a fixed order.
//!
//! Why not `tokio::sync::watch`: its receivers park on one of eight `Notify` slots picked
//! by tokio's thread-local RNG, and tokio seeds that RNG from a process-wide counter. Two
//! simulated runs of one seed in the same process (madsim's `check_determinism`, or a
//! runner that replays many seeds) then wake waiters in different orders and diverge.
//! This channel parks every receiver on one `Notify`, which wakes waiters in the order
//! they registered, so the schedule depends on the seed alone. `clippy.toml` bans
//! `tokio::sync::watch::channel` so the tokio version does not creep back.
//!
//! The subset of tokio's API that tachyon uses, with the same meaning: a version number
//! marks each send, a receiver remembers the last version it saw, and dropping the sender
//! closes the channel.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use tokio::sync::Notify;

/// The sender was dropped, so the value will never change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("watch channel closed: the sender is gone")]
pub struct RecvError;

struct Shared<T> {
    value: RwLock<T>,
    /// Bumped under the value's write lock on every send.
    version: AtomicU64,
    closed: AtomicBool,
    changed: Notify,
}

impl<T> Shared<T> {
    fn read(&self) -> RwLockReadGuard<'_, T> {
        // A panic while the value was written leaves it whole (every writer replaces or
        // edits it in place): keep serving it rather than poisoning every receiver.
        self.value.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writing end; dropping it closes the channel.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// A reading end: sees the latest value and waits for the next one.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// Atomic only so `wait_for` can return a guard from a loop that also updates it.
    seen_version: AtomicU64,
}

/// A read guard on the current value; do not hold it across an `.await`.
pub struct Ref<'a, T>(RwLockReadGuard<'a, T>);

impl<T> Deref for Ref<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A channel holding `initial`; receivers start having seen it.
pub fn channel<T>(initial: T) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared { value: RwLock::new(initial), version: AtomicU64::new(0), closed: AtomicBool::new(false), changed: Notify::new() });
    (Sender { shared: shared.clone() }, Receiver { shared, seen_version: AtomicU64::new(0) })
}

impl<T> Sender<T> {
    /// Edits the value in place if `modify` returns true, and then wakes every receiver.
    pub fn send_if_modified(&self, modify: impl FnOnce(&mut T) -> bool) -> bool {
        {
            let mut value = self.shared.value.write().unwrap_or_else(PoisonError::into_inner);
            if !modify(&mut value) {
                return false;
            }
            self.shared.version.fetch_add(1, Ordering::SeqCst);
        }
        self.shared.changed.notify_waiters();
        true
    }

    /// Edits the value in place and wakes every receiver.
    pub fn send_modify(&self, modify: impl FnOnce(&mut T)) {
        self.send_if_modified(|value| {
            modify(value);
            true
        });
    }

    /// Replaces the value, wakes every receiver and returns the old value.
    pub fn send_replace(&self, value: T) -> T {
        let mut old = None;
        self.send_if_modified(|current| {
            old = Some(std::mem::replace(current, value));
            true
        });
        old.expect("send_if_modified runs its closure")
    }

    /// A new receiver that has seen the current value.
    pub fn subscribe(&self) -> Receiver<T> {
        Receiver { shared: self.shared.clone(), seen_version: AtomicU64::new(self.shared.version.load(Ordering::SeqCst)) }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.changed.notify_waiters();
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        Receiver { shared: self.shared.clone(), seen_version: AtomicU64::new(self.seen_version.load(Ordering::SeqCst)) }
    }
}

impl<T> Receiver<T> {
    /// The current value, without marking it seen.
    pub fn borrow(&self) -> Ref<'_, T> {
        Ref(self.shared.read())
    }

    /// Waits until a value this receiver has not seen was sent and marks it seen; fails
    /// once the sender is gone and nothing new remains.
    pub async fn changed(&mut self) -> Result<(), RecvError> {
        self.next_version().await
    }

    async fn next_version(&self) -> Result<(), RecvError> {
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            // Registered before the version check, so a send in between still wakes us.
            notified.as_mut().enable();
            let version = self.shared.version.load(Ordering::SeqCst);
            if self.seen_version.swap(version, Ordering::SeqCst) != version {
                return Ok(());
            }
            if self.shared.closed.load(Ordering::SeqCst) {
                return Err(RecvError);
            }
            notified.await;
        }
    }

    /// Waits until the value satisfies `ready` (checking the current value first) and
    /// returns a guard on that value; fails if the sender is gone before that.
    pub async fn wait_for(&mut self, mut ready: impl FnMut(&T) -> bool) -> Result<Ref<'_, T>, RecvError> {
        loop {
            {
                let value = self.shared.read();
                self.seen_version.store(self.shared.version.load(Ordering::SeqCst), Ordering::SeqCst);
                if ready(&value) {
                    return Ok(Ref(value));
                }
            }
            self.next_version().await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_receiver_sees_each_send_once_and_then_waits() {
        let (tx, mut rx) = channel(1);
        tx.send_replace(2);
        rx.changed().await.expect("a new value");
        assert_eq!(*rx.borrow(), 2);
        let waited = tokio::time::timeout(Duration::from_millis(20), rx.changed()).await;
        assert!(waited.is_err(), "nothing new was sent, so changed() must wait");
    }

    #[tokio::test]
    async fn wait_for_wakes_on_the_send_that_satisfies_it() {
        let (tx, mut rx) = channel(0u32);
        let waiter = tokio::spawn(async move { *rx.wait_for(|v| *v >= 3).await.expect("satisfied") });
        for v in 1..=3 {
            tokio::task::yield_now().await;
            tx.send_modify(|x| *x = v);
        }
        assert_eq!(waiter.await.expect("waiter"), 3);
        assert!(!tx.send_if_modified(|_| false), "an unmodified value is not sent");
    }

    #[tokio::test]
    async fn dropping_the_sender_closes_the_channel_for_waiters() {
        let (tx, mut rx) = channel(false);
        let mut late = tx.subscribe();
        let waiter = tokio::spawn(async move { rx.wait_for(|v| *v).await.map(|_| ()) });
        tokio::task::yield_now().await;
        drop(tx);
        assert_eq!(waiter.await.expect("waiter"), Err(RecvError));
        assert_eq!(late.changed().await, Err(RecvError));
    }
}
