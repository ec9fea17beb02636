//! The allocator the services run on: mimalloc, declared by the binaries that serve (`roster`,
//! and `roster-bench`, which runs the services in-process) with [`global_allocator!`], which
//! also sets it up ([`configure`]) as the process loads, before its first allocation.
//!
//! The services allocate small, short-lived buffers on every request from many threads: with the
//! C library's malloc, its allocations, frees and consolidations were about a fifth of the samples
//! of a process serving CreateProfile, and mimalloc serves the same load ~14 % faster
//! (docs/BENCHMARKS.md, "The allocator"). Its defaults keep memory for reuse: identity's peak
//! RSS during a 1,000,000-row import rose from 127 MiB (glibc) to 254 MiB. [`configure`] makes
//! it commit arenas as they are used and return freed pages after 10 ms instead of a second:
//! 121 MiB (175 MiB with the second; 107 MiB returning them at once, which cost CreateProfile
//! a few per cent).

use std::os::raw::{c_int, c_long};

pub use mimalloc::MiMalloc as Allocator;

/// `mi_option_arena_eager_commit` of mimalloc 3's `mi_option_e` (libmimalloc-sys names only
/// some of them).
const ARENA_EAGER_COMMIT: c_int = 4;
/// `mi_option_purge_delay`: milliseconds before freed memory is returned to the system.
const PURGE_DELAY: c_int = 15;
/// The purge delay set: mimalloc 2's default (mimalloc 3's is 1,000).
const PURGE_AFTER_MILLISECONDS: c_long = 10;

/// Sets mimalloc's options: arenas committed on demand, freed memory returned after 10 ms. It must
/// run before the first allocation (the first arena is committed by the option as it was then),
/// which `main` is too late for: [`global_allocator!`] runs it from the ELF `.init_array`, as
/// the process loads, before the standard library's set-up and before any thread.
pub extern "C" fn configure() {
    for (option, value) in [
        (ARENA_EAGER_COMMIT, 0),
        (PURGE_DELAY, PURGE_AFTER_MILLISECONDS),
    ] {
        // As defaults: MIMALLOC_ARENA_EAGER_COMMIT and MIMALLOC_PURGE_DELAY in the environment
        // still decide. SAFETY: not thread-safe; it runs before any thread starts.
        unsafe { libmimalloc_sys::mi_option_set_default(option, value) };
    }
}

/// Declares mimalloc the global allocator of the binary it is written in, set up by
/// [`configure`] as the process loads.
#[macro_export]
macro_rules! global_allocator {
    () => {
        #[global_allocator]
        static ALLOCATOR: $crate::allocator::Allocator = $crate::allocator::Allocator;

        #[cfg(target_os = "linux")]
        #[used]
        #[unsafe(link_section = ".init_array")]
        static CONFIGURE_ALLOCATOR: extern "C" fn() = $crate::allocator::configure;
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_numbers_name_mimallocs_purge_delay_and_eager_commit() {
        // SAFETY: reading and setting options; nothing else in this test process sets them.
        let read = || unsafe {
            (
                libmimalloc_sys::mi_option_get(ARENA_EAGER_COMMIT),
                libmimalloc_sys::mi_option_get(PURGE_DELAY),
            )
        };
        // The environment decides where it names them.
        if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_some()
            || std::env::var_os("MIMALLOC_PURGE_DELAY").is_some()
        {
            return;
        }
        // mimalloc 3's defaults of these two options: numbers that named other options (or a
        // changed enum) would read something else.
        assert_eq!(read(), (2, 1000), "mimalloc 3's defaults");
        configure();
        assert_eq!(read(), (0, PURGE_AFTER_MILLISECONDS));
    }
}
