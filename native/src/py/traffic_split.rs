//! `modelyard._native.assign_arm`.

use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::traffic_split;

/// Arms up to this many are copied to the stack: an A/B test has a handful.
const STACK_ARMS: usize = 16;

/// The arm (index into `weights`) that `key` belongs to: deterministic and sticky
/// across processes and releases, each arm taking its weight's share of keys.
#[pyfunction]
pub(crate) fn assign_arm(key: &str, weights: &Bound<'_, PyAny>) -> PyResult<usize> {
    let result = match weights.cast::<PyList>() {
        Ok(list) if list.len() <= STACK_ARMS => {
            let mut buffer = [0.0f64; STACK_ARMS];
            // Count what was copied: a float conversion could run Python code
            // that resizes the list.
            let mut filled = 0;
            for (slot, item) in buffer.iter_mut().zip(list.iter()) {
                *slot = item.extract::<f64>()?;
                filled += 1;
            }
            traffic_split::assign_arm(key, &buffer[..filled])
        }
        _ => traffic_split::assign_arm(key, &weights.extract::<Vec<f64>>()?),
    };
    Ok(result?)
}
