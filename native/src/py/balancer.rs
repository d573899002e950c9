//! `modelyard._native.DeploymentPool`.

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::{lock, now_or_clock};
use crate::balancer::{BalanceError, Deployment, DeploymentPool, OutlierPolicy, Strategy};

/// `modelyard._native.STRATEGIES`: every strategy name `pick` accepts.
pub(crate) fn strategy_names(py: Python<'_>) -> PyResult<Bound<'_, PyTuple>> {
    PyTuple::new(py, Strategy::names())
}

/// The deployments of one model: picks one per call by a named strategy, tracks
/// load and latency, and breaks the circuit of deployments that keep failing.
#[pyclass(name = "DeploymentPool", module = "modelyard._native", frozen)]
pub(crate) struct PyDeploymentPool {
    // frozen + Mutex: see PyTokenBucket.
    pool: Mutex<DeploymentPool>,
}

/// A Python index checked against the pool; negative ones are out of range.
fn index(pool: &DeploymentPool, i: i64) -> Result<usize, BalanceError> {
    usize::try_from(i)
        .ok()
        .filter(|&u| u < pool.len())
        .ok_or(BalanceError::IndexOutOfRange {
            index: i,
            len: pool.len(),
        })
}

#[pymethods]
impl PyDeploymentPool {
    #[new]
    #[pyo3(signature = (
        deployments, *, consecutive_failures = 5, base_ejection_s = 30.0,
        max_ejection_s = 30.0, probe_timeout_s = 60.0, max_ejected_share = 0.5,
        ewma_alpha = 0.3, seed = 0,
    ))]
    #[allow(clippy::too_many_arguments)] // keyword arguments in Python
    fn new(
        deployments: Vec<(String, String, f64)>,
        consecutive_failures: i64,
        base_ejection_s: f64,
        max_ejection_s: f64,
        probe_timeout_s: f64,
        max_ejected_share: f64,
        ewma_alpha: f64,
        seed: u64,
    ) -> PyResult<Self> {
        let failures = u32::try_from(consecutive_failures).unwrap_or(0);
        let policy = OutlierPolicy::new(
            failures,
            base_ejection_s,
            max_ejection_s,
            probe_timeout_s,
            max_ejected_share,
        )
        .map_err(|e| match e {
            // Report the value the caller passed, not the clamped one.
            BalanceError::InvalidParameter {
                name: "consecutive_failures",
                expected,
                ..
            } => BalanceError::InvalidParameter {
                name: "consecutive_failures",
                expected,
                value: consecutive_failures as f64,
            },
            other => other,
        })?;
        let deployments = deployments
            .into_iter()
            .map(|(endpoint, region, usd_cost)| Deployment {
                endpoint,
                region,
                usd_cost,
            })
            .collect();
        let pool = DeploymentPool::new(deployments, policy, ewma_alpha, seed)?;
        Ok(Self {
            pool: Mutex::new(pool),
        })
    }

    /// The index of the deployment to call next (a half-open one's probe first).
    /// Does not count the call: follow with `start`. Raises BackendUnavailable
    /// when every deployment is unhealthy, open or has its probe out.
    #[pyo3(signature = (strategy, region = "", now = None))]
    fn pick(&self, strategy: &str, region: &str, now: Option<f64>) -> PyResult<usize> {
        let strategy: Strategy = strategy.parse()?;
        let now = now_or_clock(now);
        Ok(lock(&self.pool).pick(strategy, region, now)?)
    }

    /// Counts a call to deployment `i` as in flight.
    fn start(&self, i: i64) -> PyResult<()> {
        let mut pool = lock(&self.pool);
        Ok(index(&pool, i).and_then(|i| pool.start(i))?)
    }

    /// Ends a call to deployment `i`: latency EWMA, failure count, the circuit.
    #[pyo3(signature = (i, latency_ms, ok, now = None))]
    fn finish(&self, i: i64, latency_ms: f64, ok: bool, now: Option<f64>) -> PyResult<()> {
        let now = now_or_clock(now);
        let mut pool = lock(&self.pool);
        Ok(index(&pool, i).and_then(|i| pool.finish(i, latency_ms, ok, now))?)
    }

    /// Opens deployment `i`'s closed circuit now (a rule outside the pool's); whether it did.
    #[pyo3(signature = (i, now = None))]
    fn trip(&self, i: i64, now: Option<f64>) -> PyResult<bool> {
        let now = now_or_clock(now);
        let mut pool = lock(&self.pool);
        Ok(index(&pool, i).and_then(|i| pool.trip(i, now))?)
    }

    /// Marks deployment `i` healthy or not (health checks); unhealthy ones are never picked.
    fn set_healthy(&self, i: i64, healthy: bool) -> PyResult<()> {
        let mut pool = lock(&self.pool);
        Ok(index(&pool, i).and_then(|i| pool.set_healthy(i, healthy))?)
    }

    /// (in_flight, latency_ewma_ms, ejected_until, consecutive_failures) of deployment `i`.
    fn stats(&self, i: i64) -> PyResult<(u32, f64, f64, u32)> {
        let pool = lock(&self.pool);
        let s = index(&pool, i).and_then(|i| pool.stats(i))?;
        Ok((
            s.in_flight,
            s.latency_ewma_ms,
            s.ejected_until,
            s.consecutive_failures,
        ))
    }

    /// "closed", "open" or "half_open": deployment `i`'s circuit at `now`.
    #[pyo3(signature = (i, now = None))]
    fn state(&self, i: i64, now: Option<f64>) -> PyResult<&'static str> {
        let now = now_or_clock(now);
        let pool = lock(&self.pool);
        let phase = index(&pool, i).and_then(|i| pool.phase(i, now))?;
        Ok(phase.name())
    }

    /// The endpoint of deployment `i`.
    fn endpoint(&self, i: i64) -> PyResult<String> {
        let pool = lock(&self.pool);
        let deployment = index(&pool, i).and_then(|i| pool.deployment(i))?;
        Ok(deployment.endpoint.clone())
    }

    fn __len__(&self) -> usize {
        lock(&self.pool).len()
    }

    fn __repr__(&self) -> String {
        format!("DeploymentPool(<{} deployments>)", lock(&self.pool).len())
    }
}

/// Concurrency through the binding's own methods and `Mutex`, from `std::thread`s
/// that really overlap (Python threads cannot: the binding holds the GIL). What
/// this can show: `start` and `finish` update the in-flight count under the lock,
/// so no update is lost across threads, and `pick`, a separate lock acquisition,
/// only ever returns a usable index. What it cannot show: that pick-then-start is
/// atomic: it is not, and need not be (two threads may both pick the same idle
/// deployment; least-loaded is a heuristic).
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::together;
    use super::*;

    #[test]
    fn threads_picking_starting_and_finishing_keep_exact_counts() {
        let deployments = (0..8)
            .map(|i| (format!("host{i}:50051"), "eu".to_owned(), 1.0))
            .collect();
        let pool =
            Arc::new(PyDeploymentPool::new(deployments, 5, 30.0, 30.0, 60.0, 0.5, 0.3, 0).unwrap());
        let shared = Arc::clone(&pool);
        let most_in_flight = together(4, move || {
            let mut most = 0;
            for _ in 0..2_000 {
                let i = shared.pick("least_loaded", "", None).unwrap() as i64;
                shared.start(i).unwrap();
                most = most.max(shared.stats(i).unwrap().0);
                shared.finish(i, 1.0, true, None).unwrap();
            }
            most
        });
        // At most the 4 threads' calls are ever in flight on one deployment.
        assert!(most_in_flight.iter().all(|&most| (1..=4).contains(&most)));
        for i in 0..8 {
            // Idle, every deployment called (rotation), no failure, never ejected.
            assert_eq!(pool.stats(i).unwrap(), (0, 1.0, 0.0, 0), "deployment {i}");
        }
    }
}
