//! modelyard's native core: rate limiting in plain Rust, with a thin PyO3 layer
//! (`py`) that exposes it to Python as `modelyard._native`.

pub mod clock;
pub mod error;
mod py;
pub mod rate_limit;
pub mod token_bucket;

use pyo3::prelude::*;

/// The `modelyard._native` extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<py::PyTokenBucket>()?;
    m.add_class::<py::PyRateLimit>()?;
    Ok(())
}
