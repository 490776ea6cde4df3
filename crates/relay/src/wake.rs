//! The relay's own wakers.
//!
//! `drive` polls the cancel token, its timers and each direction with a
//! waker of its own that sets a flag and passes the wake-up on to the task,
//! so that a wake-up polls only what it concerns (docs/performance.md).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

/// What one of `drive`'s wakers (the cancel token's and the timers', or one
/// direction's) sets when it fires; it passes the wake-up on to the task.
///
/// Polling the token's future on every wake-up took two locks (the token's
/// state and its waiter list, on a token that all connections of a listener
/// share), and polling a timer's `Sleep` reads its state and re-registers
/// the waker; `drive` polls them only when this waker fired (or right after
/// it changed them), and otherwise reads the flag (docs/performance.md).
pub(crate) struct Events {
    fired: AtomicBool,
    task: std::sync::Mutex<Waker>,
}

impl Wake for Events {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::SeqCst);
        self.task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .wake_by_ref();
    }
}

/// One of `drive`'s own wakers: its [`Events`] and the waker made of them.
pub(crate) struct Flagged {
    pub(crate) events: Arc<Events>,
    pub(crate) waker: Waker,
}

impl Flagged {
    fn new(task: &Waker) -> Self {
        let events = Arc::new(Events {
            fired: AtomicBool::new(false),
            task: std::sync::Mutex::new(task.clone()),
        });
        Flagged {
            waker: Waker::from(events.clone()),
            events,
        }
    }

    /// Whether this waker fired since the last call.
    pub(crate) fn take(&self) -> bool {
        self.events.fired.swap(false, Ordering::SeqCst)
    }
}

/// `drive`'s own wakers: one for the cancel token and the timers, one for
/// each direction, so that a wake-up polls only what it concerns (the other
/// direction, waiting for its socket, would take the socket's waiter lock
/// again just to keep its waker).
pub(crate) struct EventWaker {
    pub(crate) events: Flagged,
    pub(crate) up: Flagged,
    pub(crate) down: Flagged,
    /// The task's waker that they pass wake-ups on to, as last stored (to
    /// notice a change without taking their locks).
    task: Waker,
}

impl EventWaker {
    pub(crate) fn new(cx: &Context<'_>) -> Self {
        EventWaker {
            events: Flagged::new(cx.waker()),
            up: Flagged::new(cx.waker()),
            down: Flagged::new(cx.waker()),
            task: cx.waker().clone(),
        }
    }

    /// Follow the task's waker.
    pub(crate) fn follow(&mut self, cx: &Context<'_>) {
        if !self.task.will_wake(cx.waker()) {
            // Stored before the flags are read: a wake-up after the read
            // finds the new waker.
            self.task = cx.waker().clone();
            for f in [&self.events, &self.up, &self.down] {
                *f.events.task.lock().unwrap_or_else(|e| e.into_inner()) = self.task.clone();
            }
        }
    }
}
