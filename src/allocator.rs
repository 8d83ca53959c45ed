//! The allocator the binary (and the benchmarks) run with. The library sets no global
//! allocator: a crate that links it may have its own ("conflicts with global allocator"
//! otherwise). `main.rs` declares mimalloc and calls `return_freed_memory_soon` first.
//!
//! Why mimalloc: a 500-row import allocates some ten thousand small strings, and glibc's malloc
//! and free were a sixth of the call's instructions (12% fewer instructions in all with it).
//! Why a purge delay of 100 ms: by default mimalloc (v3) keeps freed memory for a second before
//! returning it, and under a flood of large request bodies that retained memory doubled the peak
//! (558 MiB against 247 MiB with glibc, `hostile::gzip_form_bombs...`). Purging at once cost 11%
//! of import throughput (`purge_soon_vs_delayed` in `cargo bench --bench import`, 0.889), 10 ms
//! cost 7%, 100 ms 2% (within the noise) with a peak of 350-365 MiB in that test.

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (the version libmimalloc-sys builds
/// by default; `mimalloc.h` in its `c_src/mimalloc/v3`).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

// Linked from mimalloc's crate even where no global allocator names it (the library's tests).
extern crate mimalloc as _;

unsafe extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
}

/// Makes mimalloc give freed memory back to the system within 100 ms rather than a second.
/// Harmless when mimalloc is linked but not the global allocator.
pub fn return_freed_memory_soon() {
    set_purge_delay_ms(PURGE_DELAY_MS);
}

/// How long freed memory is kept before it is returned.
const PURGE_DELAY_MS: std::ffi::c_long = 100;

/// Sets mimalloc's purge delay (for the benchmark that compares purging at once with v3's
/// default of a second).
pub fn set_purge_delay_ms(milliseconds: std::ffi::c_long) {
    // SAFETY: a plain setter of mimalloc's options.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, milliseconds) }
}

/// The purge delay now, in milliseconds (for the test that the option number is right).
pub fn purge_delay_ms() -> std::ffi::c_long {
    // SAFETY: a plain getter of mimalloc's options.
    unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_option_is_mimallocs_purge_delay() {
        // v3's default (`options.c`: 1000 ms); no other option of v3 defaults to 1000.
        assert_eq!(super::purge_delay_ms(), 1000);
        super::return_freed_memory_soon();
        assert_eq!(super::purge_delay_ms(), super::PURGE_DELAY_MS);
    }
}
