//! `modelyard._native.SharedLimits`.

use pyo3::prelude::*;

use crate::clock::host_monotonic_seconds;
use crate::shared_limits::{BucketDemand, SharedLimits, SpendCharge};

/// A demand as Python passes it: (key, amount, capacity, refill per second).
type Demand = (String, f64, f64, f64);
/// A charge: (key, nano-dollars, budget nano-dollars, window begins, window resets), Unix s.
type Charge = (String, i64, i64, f64, f64);
/// `reserve`'s answer: (admitted, waits, each counter before, each counter after).
type Reserved = (bool, Vec<f64>, Vec<i64>, Vec<i64>);

fn demands(given: &[Demand]) -> Vec<BucketDemand<'_>> {
    given
        .iter()
        .map(|(key, amount, capacity, refill)| BucketDemand {
            key,
            amount: *amount,
            capacity: *capacity,
            refill_per_sec: *refill,
        })
        .collect()
}

fn charges(given: &[Charge]) -> Vec<SpendCharge<'_>> {
    given
        .iter()
        .map(|(key, nano, budget, begins, resets)| SpendCharge {
            key,
            nano: *nano,
            budget_nano: *budget,
            begins_at: *begins,
            resets_at: *resets,
        })
        .collect()
}

/// The caller's `now`, or the host's monotonic clock (the one every process shares).
fn host_now(now: Option<f64>) -> f64 {
    now.unwrap_or_else(host_monotonic_seconds)
}

/// Token buckets and spend counters in a file shared by every process that maps it.
#[pyclass(name = "SharedLimits", module = "modelyard._native", frozen)]
pub(crate) struct PySharedLimits {
    path: String,
    table: SharedLimits,
}

#[pymethods]
impl PySharedLimits {
    #[new]
    #[pyo3(signature = (path, bucket_slots = 65536, counter_slots = 65536))]
    fn new(path: String, bucket_slots: u64, counter_slots: u64) -> PyResult<Self> {
        let table = SharedLimits::open(&path, bucket_slots, counter_slots)?;
        Ok(Self { path, table })
    }

    /// Takes every demand or none; each demand's wait (0.0: it could be taken).
    #[pyo3(signature = (demands, now = None, keep = true))]
    fn take(&self, demands: Vec<Demand>, now: Option<f64>, keep: bool) -> PyResult<Vec<f64>> {
        Ok(self
            .table
            .take(&self::demands(&demands), host_now(now), keep)?)
    }

    /// Returns unused amounts to buckets still built with the same limits.
    #[pyo3(signature = (demands, now = None))]
    fn give_back(&self, demands: Vec<Demand>, now: Option<f64>) -> PyResult<()> {
        Ok(self
            .table
            .give_back(&self::demands(&demands), host_now(now))?)
    }

    /// What a bucket holds at `now` (its capacity before its first use).
    #[pyo3(signature = (key, capacity, refill_per_second, now = None))]
    fn available(
        &self,
        key: &str,
        capacity: f64,
        refill_per_second: f64,
        now: Option<f64>,
    ) -> PyResult<f64> {
        let demand = BucketDemand {
            key,
            amount: 0.0,
            capacity,
            refill_per_sec: refill_per_second,
        };
        Ok(self.table.available(&demand, host_now(now))?)
    }

    /// Takes the demands and adds the charges, all or nothing:
    /// (admitted, waits, each counter before, each counter after).
    #[pyo3(signature = (demands, charges, now = None))]
    fn reserve(
        &self,
        demands: Vec<Demand>,
        charges: Vec<Charge>,
        now: Option<f64>,
    ) -> PyResult<Reserved> {
        let r = self.table.reserve(
            &self::demands(&demands),
            &self::charges(&charges),
            host_now(now),
        )?;
        Ok((r.admitted, r.waits, r.spent_before, r.spent_after))
    }

    /// Adds the charges (refunds never below 0): each counter after.
    fn add(&self, charges: Vec<Charge>) -> PyResult<Vec<i64>> {
        Ok(self.table.add(&self::charges(&charges))?)
    }

    /// Nano-dollars a budget window's counter holds; 0 before use.
    fn spent(&self, key: &str) -> i64 {
        self.table.spent(key)
    }

    /// Marks alert fractions up to `reached` told: how many were told before.
    fn mark_told(&self, key: &str, reached: u64) -> u64 {
        self.table.mark_told(key, reached)
    }

    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    fn __repr__(&self) -> String {
        format!("SharedLimits({:?})", self.path)
    }
}
