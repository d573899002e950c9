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

/// Concurrency through the binding's own methods: the `Mutex` and `lock` that
/// Python calls go through, from `std::thread`s that really run at once (Python
/// threads cannot show this: the binding holds the GIL, so their calls never
/// overlap). What these can show: each call checks and takes under one lock, so
/// a binding that locked once to check and again to take would admit more than
/// the bucket holds. What they cannot show: a memory-ordering bug (the `Mutex`
/// rules that out by construction, and the compiler refuses shared mutation
/// without it), nor how the GIL interleaves Python callers.
#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::super::together;
    use super::*;

    #[test]
    fn threads_sharing_one_bucket_never_take_more_than_capacity() {
        // 10_000 units at 30 a take: exactly 333 fit, and the bucket never refills.
        let bucket = Arc::new(PyTokenBucket::new(10_000.0, 0.0).unwrap());
        let shared = Arc::clone(&bucket);
        let admitted = together(8, move || {
            (0..5_000)
                .filter(|_| shared.try_take(30.0, Some(0.0)).unwrap() == 0.0)
                .count()
        });
        assert_eq!(admitted.iter().sum::<usize>(), 333);
        assert_eq!(bucket.available(Some(0.0)).unwrap(), 10.0);
    }

    #[test]
    fn reservations_given_back_under_contention_are_neither_lost_nor_doubled() {
        // Room for 3 reservations of 30 among 8 threads, on the process clock.
        let bucket = Arc::new(PyTokenBucket::new(100.0, 0.0).unwrap());
        let in_hand = Arc::new(AtomicU64::new(0));
        let (shared, held) = (Arc::clone(&bucket), Arc::clone(&in_hand));
        let most_held = together(8, move || {
            let mut most = 0;
            for _ in 0..5_000 {
                if shared.try_take(30.0, None).unwrap() == 0.0 {
                    // Counted after the take and uncounted before the give-back, so
                    // `in_hand` never exceeds what the bucket has handed out.
                    most = most.max(held.fetch_add(30, Ordering::SeqCst) + 30);
                    held.fetch_sub(30, Ordering::SeqCst);
                    shared.give_back(30.0, None).unwrap();
                }
            }
            most
        });
        assert!(most_held.iter().all(|&most| most <= 90), "{most_held:?}");
        assert_eq!(in_hand.load(Ordering::SeqCst), 0);
        assert_eq!(bucket.available(None).unwrap(), 100.0);
    }
}
