//! CPU-bound work inside a call, such as validating a batch of a thousand items, kept off the
//! async executor so that one request never stalls the others (health checks included) on
//! the same worker thread.

/// Runs `work` on the current thread after handing this worker's other tasks to the rest of the
/// multi-threaded runtime (`block_in_place`); inline on a current-thread runtime, which has no
/// other worker to hand them to.
pub fn cpu_bound<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}
