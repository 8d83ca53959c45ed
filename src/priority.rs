//! Thread priorities. Every write waits for the one writer thread, so on a busy machine it must
//! not wait for a CPU behind request decoding: with four clients on two cores, the scheduler's
//! fair share gave the writer two fifths of a core and the whole HTTP path ran at 0.56 × the
//! writer's own speed. Connection and validation threads therefore run at a lower priority (a
//! higher nice value, which needs no privilege); the writer keeps the default.

/// How much lower than the writer: weight 110 against 1024, so the writer gets its core first.
#[cfg(target_os = "linux")]
const BELOW_WRITER_NICE: libc::c_int = 10;

/// Lowers the calling thread's priority below the writer's (on Linux, where priorities are
/// per thread; elsewhere it does nothing).
pub fn below_writer() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority have no memory effects; on Linux, PRIO_PROCESS with a
    // thread id changes that thread alone.
    unsafe {
        let thread = libc::gettid() as libc::id_t;
        let current = libc::getpriority(libc::PRIO_PROCESS, thread);
        if current < BELOW_WRITER_NICE {
            libc::setpriority(libc::PRIO_PROCESS, thread, BELOW_WRITER_NICE);
        }
    }
}

/// Starts rayon's pool (which validates import rows) with its threads below the writer. Only
/// the first call in a process builds the pool; later ones find it built.
pub fn start_validation_pool() {
    let _ = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("validate-{i}"))
        .start_handler(|_| below_writer())
        .build_global();
}
