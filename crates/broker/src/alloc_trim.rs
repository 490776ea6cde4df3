//! Giving freed heap memory back to the system after a burst of connections.
//!
//! glibc's allocator gives each thread that allocates an arena of its own
//! and returns an arena's memory only from its top. After a burst (10,000
//! tenants each taking a connection right after start-up, a reconnect storm)
//! a data worker's arena keeps its whole peak resident although almost all of
//! it is free: the bench's 10,000-tenant start-up measured 63–72 MiB where
//! `malloc_trim(0)` brings it to 55 (docs/performance.md). So after 1,000
//! connections, the first moment without a connection beginning or ending
//! asks glibc to return free pages ([`crate::workers`] decides when). The
//! daemon asks too right after start-up and after each reload, for what
//! reading the configuration left free.
//!
//! This is the crate's second module allowed `unsafe`: one call of a C
//! function that takes and returns plain integers.

/// Return free heap pages of every arena to the system (`malloc_trim(0)`);
/// `true` if glibc released any. A no-op elsewhere than on glibc.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim(3) takes a byte count and returns an int; it
        // only walks glibc's own arenas under their locks, and may be called
        // from any thread at any time.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
