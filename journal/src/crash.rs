//! The self-inflicted crash behind [`crate::Fault`]: SIGKILL to our own
//! process, so nothing unwinds, flushes or unlocks — exactly what an
//! out-of-memory kill or `kill -9` leaves behind.

/// Kills this process at once.
pub(crate) fn die() -> ! {
    // SAFETY: kill and getpid have no memory-safety preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    // SIGKILL to oneself is delivered before kill returns; this only
    // satisfies the type checker.
    loop {
        // SAFETY: pause has no preconditions.
        unsafe {
            libc::pause();
        }
    }
}
