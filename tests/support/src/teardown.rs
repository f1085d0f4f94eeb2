//! Async cleanup from `Drop`: a guard is dropped inside the test's runtime (which cannot be
//! blocked on from within) or while the test unwinds, so the cleanup runs on a thread of its own
//! with a runtime of its own, and the drop waits for it.

use std::future::Future;

/// Runs the future that `cleanup` makes to completion on a new thread and waits for it.
/// Reports (never panics) when the thread cannot run it.
pub(crate) fn run_blocking<F, Fut>(what: &str, cleanup: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let ran = std::thread::spawn(move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => {
                runtime.block_on(cleanup());
                Ok(())
            }
            Err(error) => Err(error.to_string()),
        }
    })
    .join();
    match ran {
        Ok(Ok(())) => {}
        Ok(Err(error)) => eprintln!("cannot clean up {what}: no runtime: {error}"),
        Err(_) => eprintln!("cleaning up {what} panicked"),
    }
}
