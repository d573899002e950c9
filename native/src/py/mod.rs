//! The PyO3 layer: argument conversion, the default clock and error mapping only.
//! The algorithms live in the plain Rust modules beside it.

mod balancer;
mod candidates;
mod errors;
mod selection;
mod shared_limits;
mod token_bucket;
mod traffic_split;

pub(crate) use balancer::{strategy_names, PyDeploymentPool};
pub(crate) use candidates::{PyCandidate, PyCandidateSet, PyConstraints, PyWeights};
pub(crate) use selection::{PyCandidateScore, PySelection};
pub(crate) use shared_limits::PySharedLimits;
pub(crate) use token_bucket::PyTokenBucket;
pub(crate) use traffic_split::assign_arm;

use std::sync::{Mutex, MutexGuard, PoisonError};

use pyo3::prelude::*;

use crate::clock::monotonic_seconds;

/// The caller's `now`, or the process-wide monotonic clock.
fn now_or_clock(now: Option<f64>) -> f64 {
    now.unwrap_or_else(monotonic_seconds)
}

/// Locks a limiter's state. Poisoning cannot happen (the core never panics), and if
/// it did the state would still be consistent: every update is a few float stores.
fn lock<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An int argument that must be >= 0 (a mask, a count): taken as i128 so a
/// negative or too large value raises InvalidRequest naming `name` rather than
/// PyO3's OverflowError.
fn unsigned(name: &str, value: i128) -> PyResult<u64> {
    u64::try_from(value).map_err(|_| {
        errors::invalid_request(format_args!(
            "{name} must be an integer between 0 and 2**64-1, got {value}"
        ))
    })
}

/// Runs `work` on `threads` OS threads released together, for the tests that
/// call a binding's methods concurrently without the GIL; returns each result.
#[cfg(test)]
fn together<T: Send + 'static>(
    threads: usize,
    work: impl Fn() -> T + Send + Sync + 'static,
) -> Vec<T> {
    use std::sync::{Arc, Barrier};

    let start = Arc::new(Barrier::new(threads));
    let work = Arc::new(work);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (start, work) = (Arc::clone(&start), Arc::clone(&work));
            std::thread::spawn(move || {
                start.wait();
                work()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}
