//! The allocator setting of the programs that train (the `ember` binary, the benchmarks), whose
//! global allocator is mimalloc.

/// `mi_option_purge_delay` of `mimalloc.h` (the same in mimalloc 2 and 3), which
/// `libmimalloc-sys` does not name.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc to keep the pages it frees, where by default it hands them back to the OS
/// after 10 ms. A training step frees and allocates the same multi-megabyte buffers as the step
/// before, and every page handed back is faulted in and zeroed by the kernel again: the
/// char-LM LSTM benchmark took 4,065 page faults in 10 steps with the default and 517 with
/// this, at the same peak RSS. Call it first in `main`. Without mimalloc as the global
/// allocator it changes nothing.
pub fn keep_freed_pages() {
    // SAFETY: `mi_option_set` stores an integer option; `-1` means "never purge".
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) }
}
