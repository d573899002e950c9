//! modelyard's native core: rate limiting, model selection, load balancing and
//! A/B traffic split in plain Rust, with a thin PyO3 layer (`py`) that exposes
//! them to Python as `modelyard._native`.
//!
//! The modules form a tree, and every `use` points down it or sideways to a
//! leaf (`error`, `num`, `rng`, `clock`), never back up:
//!
//! ```text
//! token_bucket            TokenBucket, Admission
//!   error                 BucketError
//! scoring                 CandidateSet, Selection
//!   error                 ScoringError
//!   inputs                Candidate, Constraints, Weights (-> error)
//!   hard_constraints      Rejections (-> inputs)
//! balancer                DeploymentPool
//!   strategy              Strategy and its names
//!   error                 BalanceError (-> strategy, for the names)
//!   outlier               OutlierPolicy (-> error)
//!   circuit               Circuit, CircuitPhase: one deployment's breaker (-> outlier)
//! shared_limits           SharedLimits: buckets and spend counters in a mapped file (-> token_bucket)
//!   error                 SharedLimitsError
//!   region, lock          the mapping and its one lock word
//! traffic_split           assign_arm
//!   error                 SplitError
//! clock, rng, num         shared leaves
//! py                      the PyO3 layer; py/errors maps each error enum to modelyard_client.errors
//! ```
//!
//! Every algorithm module owns its error enum in its `error.rs`, re-exported
//! beside the types that return it; no algorithm module imports pyo3. Each enum
//! derives `Debug, Clone, PartialEq`, documents every variant, and displays a bad
//! value as "{name} must be {expected}, got {value}" with `num::Num`.

pub mod balancer;
pub mod clock;
mod num;
mod py;
pub mod rng;
pub mod scoring;
pub mod shared_limits;
pub mod token_bucket;
pub mod traffic_split;

use pyo3::prelude::*;

/// The `modelyard._native` extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<py::PyTokenBucket>()?;
    m.add_class::<py::PySharedLimits>()?;
    m.add_class::<py::PyCandidate>()?;
    m.add_class::<py::PyCandidateSet>()?;
    m.add_class::<py::PyConstraints>()?;
    m.add_class::<py::PyWeights>()?;
    m.add_class::<py::PySelection>()?;
    m.add_class::<py::PyCandidateScore>()?;
    m.add_class::<py::PyDeploymentPool>()?;
    m.add("STRATEGIES", py::strategy_names(m.py())?)?;
    m.add_function(wrap_pyfunction!(py::assign_arm, m)?)?;
    Ok(())
}
