//! modelyard's native core: rate limiting, model selection, load balancing and
//! A/B traffic split in plain Rust, with a thin PyO3 layer (`py`) that exposes
//! them to Python as `modelyard._native`.

pub mod balancer;
pub mod clock;
pub mod error;
pub mod outlier;
mod py;
pub mod rate_limit;
pub mod rng;
pub mod scoring;
pub mod token_bucket;
pub mod traffic_split;

use pyo3::prelude::*;

/// The `modelyard._native` extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<py::PyTokenBucket>()?;
    m.add_class::<py::PyRateLimit>()?;
    m.add_class::<py::PyCandidate>()?;
    m.add_class::<py::PyCandidateSet>()?;
    m.add_class::<py::PyConstraints>()?;
    m.add_class::<py::PyWeights>()?;
    m.add_class::<py::PySelection>()?;
    m.add_class::<py::PyCandidateScore>()?;
    m.add_class::<py::PyDeploymentPool>()?;
    m.add_function(wrap_pyfunction!(py::assign_arm, m)?)?;
    Ok(())
}
