//! The PyO3 layer: argument conversion, the default clock and error mapping only.
//! The algorithms live in the plain Rust modules beside it.

mod rate_limit;
mod token_bucket;

pub(crate) use rate_limit::PyRateLimit;
pub(crate) use token_bucket::PyTokenBucket;

use std::sync::{Mutex, MutexGuard, PoisonError};

use pyo3::prelude::*;

use crate::clock::monotonic_seconds;
use crate::error::LimitError;

/// The caller's `now`, or the process-wide monotonic clock.
fn now_or_clock(now: Option<f64>) -> f64 {
    now.unwrap_or_else(monotonic_seconds)
}

/// Locks a limiter's state. Poisoning cannot happen (the core never panics), and if
/// it did the state would still be consistent: every update is a few float stores.
fn lock<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `modelyard.errors.InvalidRequest(str(err))`. Imported when raised, not at module
/// load, so importing `modelyard._native` never drags in grpc.
fn to_py_err(py: Python<'_>, err: LimitError) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let class = py.import("modelyard.errors")?.getattr("InvalidRequest")?;
        Ok(PyErr::from_value(class.call1((err.to_string(),))?))
    };
    build().unwrap_or_else(|import_failed| import_failed)
}
