// One read buffer per thread: documented where lib.rs declares the module.

use std::cell::RefCell;

thread_local! {
    /// This thread's scratch buffer; its capacity is the buffer size of the
    /// last relay that used it (one size in the broker: the default).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Run `f` with this thread's scratch buffer, empty and with exactly
/// `size` bytes of capacity (not zeroed: reads fill spare capacity).
///
/// `f` must not wait: another relay on this thread uses the same buffer as
/// soon as this one yields, so whatever `f` could not send must be copied
/// out before it returns. If the buffer is in use (a nested call) or the
/// thread is ending, `f` gets a buffer of its own for this call.
pub(crate) fn with<R>(size: usize, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut f = Some(f);
    let shared = SCRATCH.try_with(|cell| {
        let mut buf = cell.try_borrow_mut().ok()?;
        if buf.capacity() != size {
            *buf = Vec::with_capacity(size);
        }
        buf.clear();
        f.take().map(|f| f(&mut buf))
    });
    if let Ok(Some(r)) = shared {
        return r;
    }
    let f = f
        .take()
        .expect("the closure runs only when the scratch buffer was lent");
    f(&mut Vec::with_capacity(size))
}

#[cfg(test)]
mod tests {
    use super::with;

    #[test]
    fn lends_the_same_buffer_at_the_asked_size() {
        let first = with(100, |b| {
            assert!(b.is_empty());
            assert_eq!(b.capacity(), 100);
            b.extend_from_slice(b"left over");
            b.as_ptr() as usize
        });
        let again = with(100, |b| {
            assert!(b.is_empty(), "what a caller left is not seen by the next");
            b.as_ptr() as usize
        });
        assert_eq!(first, again, "no allocation per use");
        with(10, |b| assert_eq!(b.capacity(), 10));
    }

    #[test]
    fn a_nested_use_gets_a_buffer_of_its_own() {
        with(64, |outer| {
            outer.push(1);
            with(64, |inner| {
                assert!(inner.is_empty());
                assert_ne!(inner.as_ptr(), outer.as_ptr());
            });
            assert_eq!(outer.as_slice(), &[1]);
        });
    }
}
