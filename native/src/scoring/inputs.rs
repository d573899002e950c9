//! The inputs of selection: candidates, hard constraints and criterion weights.
//! Each is validated once when it is built, so scoring itself cannot fail.

use super::error::ScoringError;

const NON_NEGATIVE: &str = "a finite number >= 0";
const SHARE: &str = "a number between 0 and 1";

fn non_negative(value: f64) -> bool {
    value.is_finite() && value >= 0.0
}

fn share(value: f64) -> bool {
    (0.0..=1.0).contains(&value)
}

/// One model as selection sees it. Masks: bit `i` is enum value `i` of
/// `modelyard.v1.Capability` / `modelyard.v1.Modality`. Zero means unknown for
/// `context_window`, `latency_ms`, `tokens_per_second` and `memory_bytes`.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub model_id: String,
    pub capabilities: u64,
    pub modalities: u64,
    pub context_window: u64,
    pub latency_ms: f64,
    pub tokens_per_second: f64,
    pub usd_per_input_token: f64,
    pub usd_per_output_token: f64,
    pub usd_per_request: f64,
    pub reliability: f64,
    /// An evaluation suite's score, within [0, 1]; 0: never evaluated.
    pub quality: f64,
    pub memory_bytes: u64,
    pub backend: String,
    pub region: String,
    pub healthy: bool,
}

impl Candidate {
    /// A healthy candidate with every metric unknown/zero and reliability 1.
    pub fn new(model_id: impl Into<String>) -> Self {
        Self {
            model_id: model_id.into(),
            capabilities: 0,
            modalities: 0,
            context_window: 0,
            latency_ms: 0.0,
            tokens_per_second: 0.0,
            usd_per_input_token: 0.0,
            usd_per_output_token: 0.0,
            usd_per_request: 0.0,
            reliability: 1.0,
            quality: 0.0,
            memory_bytes: 0,
            backend: String::new(),
            region: String::new(),
            healthy: true,
        }
    }

    /// Every float metric finite and >= 0, reliability within [0, 1].
    pub fn validate(&self) -> Result<(), ScoringError> {
        let metrics = [
            ("latency_ms", self.latency_ms),
            ("tokens_per_second", self.tokens_per_second),
            ("usd_per_input_token", self.usd_per_input_token),
            ("usd_per_output_token", self.usd_per_output_token),
            ("usd_per_request", self.usd_per_request),
        ];
        for (name, value) in metrics {
            if !non_negative(value) {
                return Err(self.invalid(name, NON_NEGATIVE, value));
            }
        }
        if !share(self.reliability) {
            return Err(self.invalid("reliability", SHARE, self.reliability));
        }
        if !share(self.quality) {
            return Err(self.invalid("quality", SHARE, self.quality));
        }
        Ok(())
    }

    /// What this request would cost here: input tokens at the input price, the
    /// whole output budget at the output price, plus the per-request fee.
    pub fn estimated_cost_usd(&self, constraints: &Constraints) -> f64 {
        constraints.prompt_tokens as f64 * self.usd_per_input_token
            + constraints.max_output_tokens as f64 * self.usd_per_output_token
            + self.usd_per_request
    }

    fn invalid(&self, name: &'static str, expected: &'static str, value: f64) -> ScoringError {
        ScoringError::InvalidMetric {
            model_id: self.model_id.clone(),
            name,
            expected,
            value,
        }
    }
}

/// Hard constraints of one request; zero (or empty) means "no constraint" except
/// `require_healthy`.
#[derive(Debug, Clone, PartialEq)]
pub struct Constraints {
    pub required_capabilities: u64,
    /// A `Modality` value, 0 for any.
    pub input_modality: u32,
    pub prompt_tokens: u64,
    pub max_output_tokens: u64,
    pub max_latency_ms: f64,
    pub max_cost_usd: f64,
    pub min_reliability: f64,
    /// Only candidates of this backend when not empty.
    pub preferred_backend: String,
    pub excluded_models: Vec<String>,
    pub max_memory_bytes: u64,
    pub require_healthy: bool,
}

impl Default for Constraints {
    fn default() -> Self {
        Self {
            required_capabilities: 0,
            input_modality: 0,
            prompt_tokens: 0,
            max_output_tokens: 0,
            max_latency_ms: 0.0,
            max_cost_usd: 0.0,
            min_reliability: 0.0,
            preferred_backend: String::new(),
            excluded_models: Vec::new(),
            max_memory_bytes: 0,
            require_healthy: true,
        }
    }
}

impl Constraints {
    /// Limits finite and >= 0, `min_reliability` within [0, 1], the modality a bit
    /// the 64-bit mask can hold.
    pub fn validate(&self) -> Result<(), ScoringError> {
        let invalid = |name, expected, value| ScoringError::InvalidConstraint {
            name,
            expected,
            value,
        };
        if !non_negative(self.max_latency_ms) {
            return Err(invalid("max_latency_ms", NON_NEGATIVE, self.max_latency_ms));
        }
        if !non_negative(self.max_cost_usd) {
            return Err(invalid("max_cost_usd", NON_NEGATIVE, self.max_cost_usd));
        }
        if !share(self.min_reliability) {
            return Err(invalid("min_reliability", SHARE, self.min_reliability));
        }
        if self.input_modality >= 64 {
            return Err(invalid(
                "input_modality",
                "a Modality value below 64",
                f64::from(self.input_modality),
            ));
        }
        Ok(())
    }

    /// Tokens the context window must hold: the prompt plus the output budget.
    pub fn tokens_needed(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.max_output_tokens)
    }

    pub(crate) fn excludes(&self, model_id: &str) -> bool {
        // A request excludes a handful of models at most: a scan beats hashing.
        self.excluded_models.iter().any(|m| m == model_id)
    }
}

/// Criterion weights, normalised to sum to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    pub performance: f64,
    pub cost: f64,
    pub reliability: f64,
    pub capabilities: f64,
}

impl Weights {
    /// Each weight finite and >= 0, not all zero; the result sums to 1.
    pub fn new(
        performance: f64,
        cost: f64,
        reliability: f64,
        capabilities: f64,
    ) -> Result<Self, ScoringError> {
        let raw = [
            ("performance", performance),
            ("cost", cost),
            ("reliability", reliability),
            ("capabilities", capabilities),
        ];
        for (name, value) in raw {
            if !non_negative(value) {
                return Err(ScoringError::InvalidWeight { name, value });
            }
        }
        // Scale by the largest first so four weights near f64::MAX cannot sum to inf.
        let largest = performance.max(cost).max(reliability).max(capabilities);
        if largest == 0.0 {
            return Err(ScoringError::ZeroWeights);
        }
        let [p, c, r, k] = [performance, cost, reliability, capabilities].map(|w| w / largest);
        let sum = p + c + r + k;
        Ok(Self {
            performance: p / sum,
            cost: c / sum,
            reliability: r / sum,
            capabilities: k / sum,
        })
    }
}

/// One candidate's four criterion scores, each within [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Criteria {
    pub performance: f64,
    pub cost: f64,
    pub reliability: f64,
    pub capabilities: f64,
}

impl Criteria {
    /// The weighted sum, within [0, 1] (clamped against rounding above 1).
    pub fn total(&self, w: &Weights) -> f64 {
        let sum = self.performance * w.performance
            + self.cost * w.cost
            + self.reliability * w.reliability
            + self.capabilities * w.capabilities;
        sum.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_normalised_and_validated() {
        let w = Weights::new(2.0, 1.0, 1.0, 0.0).unwrap();
        assert_eq!((w.performance, w.cost, w.capabilities), (0.5, 0.25, 0.0));
        let huge = Weights::new(f64::MAX, f64::MAX, f64::MAX, f64::MAX).unwrap();
        assert_eq!(huge.cost, 0.25);
        assert_eq!(
            Weights::new(1.0, -1.0, 0.0, 0.0).unwrap_err().to_string(),
            "weights.cost must be a finite number >= 0, got -1"
        );
        assert!(matches!(
            Weights::new(1.0, 1.0, f64::NAN, 0.0),
            Err(ScoringError::InvalidWeight {
                name: "reliability",
                ..
            })
        ));
        assert_eq!(
            Weights::new(0.0, 0.0, 0.0, 0.0),
            Err(ScoringError::ZeroWeights)
        );
    }

    /// Kills `+` → `-` / `*` and `*` → `/` in `Criteria::total`: every criterion
    /// counts, by its own weight.
    #[test]
    fn the_total_is_the_weighted_sum_of_the_criteria() {
        let criteria = Criteria {
            performance: 0.5,
            cost: 0.25,
            reliability: 1.0,
            capabilities: 0.5,
        };
        // Normalised to 0.1, 0.2, 0.3, 0.4: 0.05 + 0.05 + 0.3 + 0.2.
        let w = Weights::new(1.0, 2.0, 3.0, 4.0).unwrap();
        assert!(
            (criteria.total(&w) - 0.6).abs() < 1e-12,
            "{}",
            criteria.total(&w)
        );
        let full = Criteria {
            performance: 1.0,
            cost: 1.0,
            reliability: 1.0,
            capabilities: 1.0,
        };
        assert_eq!(full.total(&w), 1.0);
    }

    #[test]
    fn candidate_metrics_are_validated_naming_model_and_field() {
        let mut c = Candidate::new("openai/gpt");
        assert_eq!(c.validate(), Ok(()));
        c.latency_ms = f64::NAN;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "candidate 'openai/gpt': latency_ms must be a finite number >= 0, got NaN"
        );
        c.latency_ms = 1.0;
        c.reliability = 1.5;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "candidate 'openai/gpt': reliability must be a number between 0 and 1, got 1.5"
        );
    }

    #[test]
    fn constraints_are_validated() {
        assert_eq!(Constraints::default().validate(), Ok(()));
        let bad = Constraints {
            max_cost_usd: f64::INFINITY,
            ..Constraints::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "max_cost_usd must be a finite number >= 0, got inf"
        );
        let bad = Constraints {
            input_modality: 64,
            ..Constraints::default()
        };
        assert!(bad.validate().is_err());
        let full = Constraints {
            prompt_tokens: u64::MAX,
            max_output_tokens: 5,
            ..Constraints::default()
        };
        assert_eq!(full.tokens_needed(), u64::MAX);
    }

    #[test]
    fn estimated_cost_counts_the_whole_output_budget() {
        let mut c = Candidate::new("m");
        c.usd_per_input_token = 1e-6;
        c.usd_per_output_token = 2e-6;
        c.usd_per_request = 0.01;
        let k = Constraints {
            prompt_tokens: 1000,
            max_output_tokens: 500,
            ..Constraints::default()
        };
        assert!((c.estimated_cost_usd(&k) - 0.012).abs() < 1e-12);
    }
}
