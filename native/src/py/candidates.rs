//! `Candidate`, `CandidateSet`, `Constraints` and `Weights`: the inputs of selection.

use std::sync::Arc;

use pyo3::prelude::*;

use super::selection::PySelection;
use super::unsigned;
use crate::scoring::{Candidate, CandidateSet, Constraints, Weights};

/// Above this many candidates `select` releases the GIL (smaller sets score in a
/// few microseconds, less than releasing and re-taking it costs).
const DETACH_ABOVE: usize = 2048;

/// One model as selection sees it (see `scoring::Candidate`).
#[pyclass(name = "Candidate", module = "modelyard._native", frozen)]
pub(crate) struct PyCandidate {
    pub(super) inner: Candidate,
}

#[pymethods]
impl PyCandidate {
    #[new]
    #[pyo3(signature = (
        model_id, *, capabilities = 0, modalities = 0, context_window = 0,
        latency_ms = 0.0, tokens_per_second = 0.0, usd_per_input_token = 0.0,
        usd_per_output_token = 0.0, usd_per_request = 0.0, reliability = 1.0,
        quality = 0.0, memory_bytes = 0, backend = "", region = "", healthy = true,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        model_id: String,
        capabilities: i128,
        modalities: i128,
        context_window: i128,
        latency_ms: f64,
        tokens_per_second: f64,
        usd_per_input_token: f64,
        usd_per_output_token: f64,
        usd_per_request: f64,
        reliability: f64,
        quality: f64,
        memory_bytes: i128,
        backend: &str,
        region: &str,
        healthy: bool,
    ) -> PyResult<Self> {
        let inner = Candidate {
            capabilities: unsigned("capabilities", capabilities)?,
            modalities: unsigned("modalities", modalities)?,
            context_window: unsigned("context_window", context_window)?,
            latency_ms,
            tokens_per_second,
            usd_per_input_token,
            usd_per_output_token,
            usd_per_request,
            reliability,
            quality,
            memory_bytes: unsigned("memory_bytes", memory_bytes)?,
            backend: backend.to_owned(),
            region: region.to_owned(),
            healthy,
            model_id,
        };
        // Checked again by CandidateSet; failing here points at the bad entry sooner.
        inner.validate()?;
        Ok(Self { inner })
    }

    #[getter]
    fn model_id(&self) -> &str {
        &self.inner.model_id
    }
    #[getter]
    fn capabilities(&self) -> u64 {
        self.inner.capabilities
    }
    #[getter]
    fn modalities(&self) -> u64 {
        self.inner.modalities
    }
    #[getter]
    fn context_window(&self) -> u64 {
        self.inner.context_window
    }
    #[getter]
    fn latency_ms(&self) -> f64 {
        self.inner.latency_ms
    }
    #[getter]
    fn tokens_per_second(&self) -> f64 {
        self.inner.tokens_per_second
    }
    #[getter]
    fn usd_per_input_token(&self) -> f64 {
        self.inner.usd_per_input_token
    }
    #[getter]
    fn usd_per_output_token(&self) -> f64 {
        self.inner.usd_per_output_token
    }
    #[getter]
    fn usd_per_request(&self) -> f64 {
        self.inner.usd_per_request
    }
    #[getter]
    fn reliability(&self) -> f64 {
        self.inner.reliability
    }
    #[getter]
    fn quality(&self) -> f64 {
        self.inner.quality
    }
    #[getter]
    fn memory_bytes(&self) -> u64 {
        self.inner.memory_bytes
    }
    #[getter]
    fn backend(&self) -> &str {
        &self.inner.backend
    }
    #[getter]
    fn region(&self) -> &str {
        &self.inner.region
    }
    #[getter]
    fn healthy(&self) -> bool {
        self.inner.healthy
    }

    fn __repr__(&self) -> String {
        format!(
            "Candidate(model_id={:?}, backend={:?}, healthy={})",
            self.inner.model_id,
            self.inner.backend,
            if self.inner.healthy { "True" } else { "False" }
        )
    }
}

/// Candidates validated once and scored by many `select` calls.
#[pyclass(name = "CandidateSet", module = "modelyard._native", frozen)]
pub(crate) struct PyCandidateSet {
    set: Arc<CandidateSet>,
}

#[pymethods]
impl PyCandidateSet {
    #[new]
    fn new(candidates: Vec<Bound<'_, PyCandidate>>) -> PyResult<Self> {
        let candidates = candidates.iter().map(|c| c.get().inner.clone()).collect();
        let set = CandidateSet::new(candidates)?;
        Ok(Self { set: Arc::new(set) })
    }

    /// Scores every candidate: hard constraints first, then the weighted criteria.
    fn select(
        &self,
        py: Python<'_>,
        constraints: &Bound<'_, PyConstraints>,
        weights: &Bound<'_, PyWeights>,
    ) -> PySelection {
        let constraints = Arc::clone(&constraints.get().inner);
        let weights = weights.get().inner;
        let selection = if self.set.len() > DETACH_ABOVE {
            py.detach(|| self.set.select(&constraints, &weights))
        } else {
            self.set.select(&constraints, &weights)
        };
        PySelection::new(Arc::clone(&self.set), constraints, selection)
    }

    fn __len__(&self) -> usize {
        self.set.len()
    }

    fn __getitem__(&self, index: isize) -> PyResult<PyCandidate> {
        let i = super::selection::resolve_index(index, self.set.len())?;
        Ok(PyCandidate {
            inner: self.set.candidates()[i].clone(),
        })
    }

    fn __repr__(&self) -> String {
        format!("CandidateSet(<{} candidates>)", self.set.len())
    }
}

/// The hard constraints of one request; 0 / empty means no constraint.
#[pyclass(name = "Constraints", module = "modelyard._native", frozen)]
pub(crate) struct PyConstraints {
    inner: Arc<Constraints>,
}

#[pymethods]
impl PyConstraints {
    #[new]
    #[pyo3(signature = (
        *, required_capabilities = 0, input_modality = 0, prompt_tokens = 0,
        max_output_tokens = 0, max_latency_ms = 0.0, max_cost_usd = 0.0,
        min_reliability = 0.0, preferred_backend = "", excluded_models = Vec::new(),
        max_memory_bytes = 0, require_healthy = true,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        required_capabilities: i128,
        input_modality: i128,
        prompt_tokens: i128,
        max_output_tokens: i128,
        max_latency_ms: f64,
        max_cost_usd: f64,
        min_reliability: f64,
        preferred_backend: &str,
        excluded_models: Vec<String>,
        max_memory_bytes: i128,
        require_healthy: bool,
    ) -> PyResult<Self> {
        let modality = unsigned("input_modality", input_modality)?;
        let inner = Constraints {
            required_capabilities: unsigned("required_capabilities", required_capabilities)?,
            // Saturate: validate() reports anything >= 64 with the value.
            input_modality: u32::try_from(modality).unwrap_or(u32::MAX),
            prompt_tokens: unsigned("prompt_tokens", prompt_tokens)?,
            max_output_tokens: unsigned("max_output_tokens", max_output_tokens)?,
            max_latency_ms,
            max_cost_usd,
            min_reliability,
            preferred_backend: preferred_backend.to_owned(),
            excluded_models,
            max_memory_bytes: unsigned("max_memory_bytes", max_memory_bytes)?,
            require_healthy,
        };
        inner.validate()?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    #[getter]
    fn required_capabilities(&self) -> u64 {
        self.inner.required_capabilities
    }
    #[getter]
    fn input_modality(&self) -> u32 {
        self.inner.input_modality
    }
    #[getter]
    fn prompt_tokens(&self) -> u64 {
        self.inner.prompt_tokens
    }
    #[getter]
    fn max_output_tokens(&self) -> u64 {
        self.inner.max_output_tokens
    }
    #[getter]
    fn max_latency_ms(&self) -> f64 {
        self.inner.max_latency_ms
    }
    #[getter]
    fn max_cost_usd(&self) -> f64 {
        self.inner.max_cost_usd
    }
    #[getter]
    fn min_reliability(&self) -> f64 {
        self.inner.min_reliability
    }
    #[getter]
    fn preferred_backend(&self) -> &str {
        &self.inner.preferred_backend
    }
    #[getter]
    fn excluded_models(&self) -> Vec<String> {
        self.inner.excluded_models.clone()
    }
    #[getter]
    fn max_memory_bytes(&self) -> u64 {
        self.inner.max_memory_bytes
    }
    #[getter]
    fn require_healthy(&self) -> bool {
        self.inner.require_healthy
    }
}

/// Criterion weights, normalised to sum to 1.
#[pyclass(name = "Weights", module = "modelyard._native", frozen)]
pub(crate) struct PyWeights {
    inner: Weights,
}

#[pymethods]
impl PyWeights {
    #[new]
    #[pyo3(signature = (performance = 1.0, cost = 1.0, reliability = 1.0, capabilities = 1.0))]
    fn new(performance: f64, cost: f64, reliability: f64, capabilities: f64) -> PyResult<Self> {
        let inner = Weights::new(performance, cost, reliability, capabilities)?;
        Ok(Self { inner })
    }

    #[getter]
    fn performance(&self) -> f64 {
        self.inner.performance
    }
    #[getter]
    fn cost(&self) -> f64 {
        self.inner.cost
    }
    #[getter]
    fn reliability(&self) -> f64 {
        self.inner.reliability
    }
    #[getter]
    fn capabilities(&self) -> f64 {
        self.inner.capabilities
    }

    fn __repr__(&self) -> String {
        let w = &self.inner;
        format!(
            "Weights(performance={:?}, cost={:?}, reliability={:?}, capabilities={:?})",
            w.performance, w.cost, w.reliability, w.capabilities
        )
    }
}
