//! `modelyard._native.TokenBucket`.

use std::sync::Mutex;

use pyo3::prelude::*;

use super::{lock, now_or_clock};
use crate::token_bucket::TokenBucket;

/// A token bucket; `now` arguments are monotonic seconds, `None` for the process clock.
#[pyclass(name = "TokenBucket", module = "modelyard._native", frozen)]
pub(crate) struct PyTokenBucket {
    capacity: f64,
    refill_per_second: f64,
    // frozen + Mutex: shareable across threads (and free-threaded builds) without
    // PyO3's borrow flag raising "already borrowed".
    bucket: Mutex<TokenBucket>,
}

#[pymethods]
impl PyTokenBucket {
    #[new]
    fn new(capacity: f64, refill_per_second: f64) -> PyResult<Self> {
        let bucket = TokenBucket::new(capacity, refill_per_second)?;
        Ok(Self {
            capacity,
            refill_per_second,
            bucket: Mutex::new(bucket),
        })
    }

    /// Takes `amount` and returns 0.0, or takes nothing and returns the seconds to wait.
    #[pyo3(signature = (amount, now = None))]
    fn try_take(&self, amount: f64, now: Option<f64>) -> PyResult<f64> {
        let now = now_or_clock(now);
        let admission = lock(&self.bucket).try_take(amount, now)?;
        Ok(admission.wait_seconds())
    }

    /// Returns `amount` to the bucket, never beyond capacity.
    #[pyo3(signature = (amount, now = None))]
    fn give_back(&self, amount: f64, now: Option<f64>) -> PyResult<()> {
        let now = now_or_clock(now);
        Ok(lock(&self.bucket).give_back(amount, now)?)
    }

    /// Units available at `now`.
    #[pyo3(signature = (now = None))]
    fn available(&self, now: Option<f64>) -> PyResult<f64> {
        let now = now_or_clock(now);
        Ok(lock(&self.bucket).available(now)?)
    }

    #[getter]
    fn capacity(&self) -> f64 {
        self.capacity
    }

    #[getter]
    fn refill_per_second(&self) -> f64 {
        self.refill_per_second
    }

    fn __repr__(&self) -> String {
        format!(
            "TokenBucket(capacity={:?}, refill_per_second={:?})",
            self.capacity, self.refill_per_second
        )
    }
}
