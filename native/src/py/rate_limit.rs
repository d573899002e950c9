//! `modelyard._native.RateLimit`.

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyInt;

use super::{lock, now_or_clock, to_py_err};
use crate::rate_limit::RateLimit;
use crate::token_bucket::Admission;

/// Requests- and tokens-per-minute limits judged together; 0 means unlimited.
#[pyclass(name = "RateLimit", module = "modelyard._native", frozen)]
pub(crate) struct PyRateLimit {
    requests_per_minute: f64,
    tokens_per_minute: f64,
    // frozen + Mutex: see PyTokenBucket.
    limit: Mutex<RateLimit>,
}

#[pymethods]
impl PyRateLimit {
    #[new]
    #[pyo3(signature = (requests_per_minute = 0.0, tokens_per_minute = 0.0))]
    fn new(py: Python<'_>, requests_per_minute: f64, tokens_per_minute: f64) -> PyResult<Self> {
        let limit =
            RateLimit::new(requests_per_minute, tokens_per_minute).map_err(|e| to_py_err(py, e))?;
        Ok(Self {
            requests_per_minute,
            tokens_per_minute,
            limit: Mutex::new(limit),
        })
    }

    /// Admits one request of `tokens` tokens and returns 0.0, or admits nothing and
    /// returns the seconds after which it would be admitted.
    #[pyo3(signature = (tokens, now = None))]
    fn try_acquire(
        &self,
        py: Python<'_>,
        tokens: &Bound<'_, PyAny>,
        now: Option<f64>,
    ) -> PyResult<f64> {
        let tokens = token_count(tokens)?;
        let now = now_or_clock(now);
        lock(&self.limit)
            .try_acquire(tokens, now)
            .map(Admission::wait_seconds)
            .map_err(|e| to_py_err(py, e))
    }

    /// Gives back tokens an admitted request reserved but did not use.
    #[pyo3(signature = (tokens, now = None))]
    fn refund(&self, py: Python<'_>, tokens: &Bound<'_, PyAny>, now: Option<f64>) -> PyResult<()> {
        let tokens = token_count(tokens)?;
        let now = now_or_clock(now);
        lock(&self.limit)
            .refund(tokens, now)
            .map_err(|e| to_py_err(py, e))
    }

    #[getter]
    fn requests_per_minute(&self) -> f64 {
        self.requests_per_minute
    }

    #[getter]
    fn tokens_per_minute(&self) -> f64 {
        self.tokens_per_minute
    }

    fn __repr__(&self) -> String {
        format!(
            "RateLimit(requests_per_minute={:?}, tokens_per_minute={:?})",
            self.requests_per_minute, self.tokens_per_minute
        )
    }
}

/// A token count as f64. Ints that do not fit u64 (negative, or beyond 2**64) still
/// reach the core, which rejects them as InvalidRequest naming the value; anything
/// that is not an int keeps Python's own TypeError.
fn token_count(tokens: &Bound<'_, PyAny>) -> PyResult<f64> {
    match tokens.extract::<u64>() {
        Ok(count) => Ok(count as f64),
        Err(_) if tokens.is_instance_of::<PyInt>() => Ok(tokens.extract::<f64>().unwrap_or_else(
            // Beyond f64's range: keep the sign so the message says which way it is wrong.
            |_| match tokens.lt(0) {
                Ok(true) => f64::NEG_INFINITY,
                _ => f64::INFINITY,
            },
        )),
        Err(not_an_int) => Err(not_an_int),
    }
}
