//! The pause between retries of something that failed for want of a resource
//! (descriptors, memory, a full backlog): it doubles from a first pause up to
//! a cap, so a loop neither spins nor sleeps longer than it must. The accept
//! loops (`listener`, `http`) and the upstream connect use it.

use std::io;
use std::time::Duration;

/// Errors that mean "out of a resource" (descriptors, kernel memory): wait and
/// try again instead of failing or spinning.
pub(crate) fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// How an accept loop waits after running out of a resource (descriptors,
/// memory): 10 ms, doubling up to 1 s, from the start after an accept succeeds.
pub(crate) const ACCEPT_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(10), Duration::from_secs(1));

/// A doubling pause, from `first` up to `max`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `first`, never above `max`.
    pub(crate) const fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The pause to take now; the one after it is twice as long (up to the cap).
    pub(crate) fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (pause * 2).min(self.max);
        pause
    }

    /// After a success: the next failure starts from the first pause again.
    pub(crate) fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_starts_over_after_reset() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(10), ms(50));
        let pauses: Vec<_> = (0..5).map(|_| b.next_pause()).collect();
        assert_eq!(pauses, [ms(10), ms(20), ms(40), ms(50), ms(50)]);
        b.reset();
        assert_eq!(b.next_pause(), ms(10));
    }
}
