//! `Selection` and `CandidateScore`: the outcome of `CandidateSet.select`.
//!
//! A `Selection` keeps the compact native scores; a `CandidateScore` object (and
//! its rejection text) is built only for the entries Python actually reads.

use std::sync::Arc;

use pyo3::prelude::*;

use crate::scoring::{describe, CandidateSet, Constraints, Selection};

/// Every candidate's outcome, in candidate order, and the winner.
#[pyclass(name = "Selection", module = "modelyard._native", frozen)]
pub(crate) struct PySelection {
    set: Arc<CandidateSet>,
    constraints: Arc<Constraints>,
    selection: Selection,
}

impl PySelection {
    pub(super) fn new(
        set: Arc<CandidateSet>,
        constraints: Arc<Constraints>,
        selection: Selection,
    ) -> Self {
        Self {
            set,
            constraints,
            selection,
        }
    }

    fn score(&self, i: usize) -> PyCandidateScore {
        let c = &self.set.candidates()[i];
        let s = &self.selection.scores[i];
        PyCandidateScore {
            index: i,
            model_id: c.model_id.clone(),
            eligible: s.eligible(),
            total: s.total,
            performance: s.criteria.performance,
            cost: s.criteria.cost,
            reliability: s.criteria.reliability,
            capabilities: s.criteria.capabilities,
            estimated_cost_usd: s.estimated_cost_usd,
            rejection: describe(c, &self.constraints, s.estimated_cost_usd, s.rejections),
        }
    }
}

#[pymethods]
impl PySelection {
    /// Index of the best eligible candidate, `None` when none is eligible.
    #[getter]
    fn chosen(&self) -> Option<usize> {
        self.selection.chosen
    }

    /// Eligible indices, best first: the order a fallback chain should try.
    fn ranked(&self) -> Vec<usize> {
        self.set.ranked(&self.selection)
    }

    /// Every candidate's score, in candidate order.
    fn scores(&self) -> Vec<PyCandidateScore> {
        (0..self.selection.scores.len())
            .map(|i| self.score(i))
            .collect()
    }

    fn __len__(&self) -> usize {
        self.selection.scores.len()
    }

    fn __getitem__(&self, index: isize) -> PyResult<PyCandidateScore> {
        Ok(self.score(resolve_index(index, self.selection.scores.len())?))
    }

    fn __repr__(&self) -> String {
        let eligible = self
            .selection
            .scores
            .iter()
            .filter(|s| s.eligible())
            .count();
        format!(
            "Selection(chosen={}, eligible={eligible} of {})",
            self.selection
                .chosen
                .map_or_else(|| "None".to_owned(), |i| i.to_string()),
            self.selection.scores.len()
        )
    }
}

/// One candidate's outcome. Criteria and total are 0 for an ineligible candidate,
/// whose `rejection` lists every violated constraint ("" when eligible).
#[pyclass(name = "CandidateScore", module = "modelyard._native", frozen)]
pub(crate) struct PyCandidateScore {
    #[pyo3(get)]
    index: usize,
    #[pyo3(get)]
    model_id: String,
    #[pyo3(get)]
    eligible: bool,
    #[pyo3(get)]
    total: f64,
    #[pyo3(get)]
    performance: f64,
    #[pyo3(get)]
    cost: f64,
    #[pyo3(get)]
    reliability: f64,
    #[pyo3(get)]
    capabilities: f64,
    #[pyo3(get)]
    estimated_cost_usd: f64,
    #[pyo3(get)]
    rejection: String,
}

#[pymethods]
impl PyCandidateScore {
    /// (performance, cost, reliability, capabilities).
    #[getter]
    fn criteria(&self) -> (f64, f64, f64, f64) {
        (
            self.performance,
            self.cost,
            self.reliability,
            self.capabilities,
        )
    }

    fn __repr__(&self) -> String {
        if self.eligible {
            format!(
                "CandidateScore(index={}, model_id={:?}, total={:.4})",
                self.index, self.model_id, self.total
            )
        } else {
            format!(
                "CandidateScore(index={}, model_id={:?}, rejection={:?})",
                self.index, self.model_id, self.rejection
            )
        }
    }
}

/// A Python index (negative counts from the end) checked against `len`.
pub(super) fn resolve_index(index: isize, len: usize) -> PyResult<usize> {
    let resolved = if index < 0 {
        len.checked_sub(index.unsigned_abs())
    } else {
        Some(index.unsigned_abs()).filter(|&i| i < len)
    };
    resolved.ok_or_else(|| {
        // IndexError, not InvalidRequest: the sequence protocol (`for s in selection`)
        // ends iteration on it.
        pyo3::exceptions::PyIndexError::new_err(format!(
            "index {index} is out of range for {len} candidates"
        ))
    })
}
