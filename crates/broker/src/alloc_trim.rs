//! The broker's allocator, and giving freed heap memory back to the system
//! after a burst of connections.
//!
//! The allocator is jemalloc (docs/decisions.md "Memory"). glibc's malloc
//! took ~3,900 of ~24,000 user-space instructions per relayed connection,
//! most of them in `posix_memalign` for tokio's cache-aligned task cells and
//! I/O registrations, which glibc 2.36 serves without its thread cache.
//!
//! Any allocator keeps pages it freed for reuse. After a burst (10,000
//! tenants each taking a connection right after start-up, a reconnect storm)
//! that is most of the burst's peak, resident although almost all of it is
//! free; jemalloc returns such pages only after a decay time (10 s), glibc
//! only from an arena's top. So after 1,000 connections, the first moment
//! without a connection beginning or ending asks the allocator to return its
//! free pages now ([`crate::workers`] decides when). The daemon asks too
//! right after start-up and after each reload, for what reading the
//! configuration left free.
//!
//! This is the crate's second module allowed `unsafe`: one call of a C
//! function with a constant name and no values passed either way.

/// Every allocation of the broker's library and binary, and of their tests.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Return every arena's free pages to the system now (jemalloc's
/// `arena.<all>.purge`); `true` if jemalloc accepted the request.
pub fn trim() -> bool {
    // 4096 is MALLCTL_ARENAS_ALL: every arena.
    const PURGE_ALL: &std::ffi::CStr = c"arena.4096.purge";
    // SAFETY: mallctl(3) with a NUL-terminated name and null pointers for
    // the old and the new value, as this control ("void": it reads and
    // writes nothing) requires; jemalloc takes its own locks, so any thread
    // may call it at any time.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            PURGE_ALL.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        ) == 0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn jemalloc_accepts_the_purge() {
        let v: Vec<u8> = vec![1; 1 << 20];
        drop(v);
        assert!(super::trim());
    }
}
