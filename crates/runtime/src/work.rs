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

/// Runs `work` on the blocking thread pool and waits for it. Unlike [`cpu_bound`], which holds
/// the calling task until `work` is done, the futures the calling task polls beside this one
/// (a file reader joined with it, other batches) go on meanwhile, on another core. A panic in
/// `work` is resumed here; `None` when the runtime shuts down before `work` ran.
pub async fn on_blocking_pool<R: Send + 'static>(
    work: impl FnOnce() -> R + Send + 'static,
) -> Option<R> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => Some(result),
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => None,
    }
}
