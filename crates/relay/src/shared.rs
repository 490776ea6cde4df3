//! What both directions of a relay and `drive` share: the time of the last
//! byte moved (for the idle timeout) and which directions hold, read into or
//! are asked to give back their buffers (for the buffer-release timer).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::Direction;

/// What both directions and `drive` share within one relay.
pub(crate) struct Shared {
    pub(crate) activity: Activity,
    pub(crate) buffers: Buffers,
}

/// Time of the last byte moved in either direction.
///
/// Stored as an offset from a base instant in an atomic (rather than a
/// `Cell<Instant>`) so the relay future stays `Send`; both directions update
/// it and the idle check reads it, all within one task, so `Relaxed` suffices.
pub(crate) struct Activity {
    /// Reference point for `last_nanos`; a `tokio` instant so paused test
    /// time works.
    base: Instant,
    /// Nanoseconds after `base` at which a byte last moved.
    last_nanos: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Activity {
            base: Instant::now(),
            last_nanos: AtomicU64::new(0),
        }
    }

    pub(crate) fn touch(&self) {
        let nanos = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_nanos.store(nanos, Ordering::Relaxed);
    }

    pub(crate) fn last(&self) -> Instant {
        self.base + Duration::from_nanos(self.last_nanos.load(Ordering::Relaxed))
    }
}

/// Which directions hold a buffer, read since the release timer last fired,
/// or are asked to give their buffer back: one bit per direction
/// ([`Buffers::bit`]) in each field.
///
/// One release timer per connection, in `drive`, instead of one per
/// direction: half the timer-wheel registrations per connection and no timer
/// polled on each wake-up of a busy direction (docs/performance.md). Only the
/// relay's own task touches these (atomics only so the future stays `Send`),
/// so plain loads and stores suffice; a direction sees a request to give its
/// buffer back because `drive` polls both directions again after its timer
/// fired.
#[derive(Default)]
pub(crate) struct Buffers {
    held: AtomicU8,
    read_since: AtomicU8,
    release: AtomicU8,
}

impl Buffers {
    pub(crate) fn bit(dir: Direction) -> u8 {
        match dir {
            Direction::Upstream => 1,
            Direction::Downstream => 2,
        }
    }

    pub(crate) fn set(field: &AtomicU8, bit: u8) {
        let v = field.load(Ordering::Relaxed);
        if v & bit == 0 {
            field.store(v | bit, Ordering::Relaxed);
        }
    }

    pub(crate) fn clear(field: &AtomicU8, bit: u8) {
        let v = field.load(Ordering::Relaxed);
        if v & bit != 0 {
            field.store(v & !bit, Ordering::Relaxed);
        }
    }

    /// A direction allocated its buffer (which counts as activity).
    pub(crate) fn allocated(&self, bit: u8) {
        Self::set(&self.held, bit);
        Self::set(&self.read_since, bit);
    }

    /// A direction read from its source (which withdraws a request to give
    /// its buffer back that it has not acted on yet).
    pub(crate) fn read(&self, bit: u8) {
        Self::set(&self.read_since, bit);
        Self::clear(&self.release, bit);
    }

    /// A direction no longer holds a buffer.
    pub(crate) fn dropped(&self, bit: u8) {
        Self::clear(&self.held, bit);
        Self::clear(&self.release, bit);
    }

    /// Whether `drive` asks this direction to give its buffer back.
    pub(crate) fn asked(&self, bit: u8) -> bool {
        self.release.load(Ordering::Relaxed) & bit != 0
    }

    /// Whether a direction holds a buffer it is not already asked to give
    /// back, so the release timer must run. Asked after polling both
    /// directions, which are the only ones to change it.
    pub(crate) fn want_timer(&self) -> bool {
        let held = self.held.load(Ordering::Relaxed);
        held & !self.release.load(Ordering::Relaxed) != 0
    }

    /// The release timer fired: directions that held a buffer and read
    /// nothing for a whole period are asked to give it back. Returns whether
    /// the timer must run again (a direction read during the period).
    pub(crate) fn period_over(&self) -> bool {
        let held = self.held.load(Ordering::Relaxed);
        let read = self.read_since.load(Ordering::Relaxed);
        self.release.store(held & !read, Ordering::Relaxed);
        self.read_since.store(0, Ordering::Relaxed);
        held & read != 0
    }
}
