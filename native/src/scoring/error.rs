//! Errors of selection's inputs. Every variant is the caller's fault (the PyO3
//! layer raises InvalidRequest); scoring itself cannot fail.

use std::fmt;

use crate::num::Num;

/// Why a candidate set, constraints or weights could not be built.
#[derive(Debug, Clone, PartialEq)]
pub enum ScoringError {
    /// `CandidateSet` of nothing.
    NoCandidates,
    /// A candidate's metric is NaN, infinite or out of range.
    InvalidMetric {
        model_id: String,
        name: &'static str,
        expected: &'static str,
        value: f64,
    },
    /// A constraint is NaN, infinite or out of range.
    InvalidConstraint {
        name: &'static str,
        expected: &'static str,
        value: f64,
    },
    /// A criterion weight is NaN, infinite or negative.
    InvalidWeight { name: &'static str, value: f64 },
    /// Every weight is zero: nothing to rank by.
    ZeroWeights,
}

impl fmt::Display for ScoringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCandidates => write!(f, "no candidates"),
            Self::InvalidMetric {
                model_id,
                name,
                expected,
                value,
            } => write!(
                f,
                "candidate '{model_id}': {name} must be {expected}, got {}",
                Num(*value)
            ),
            Self::InvalidConstraint {
                name,
                expected,
                value,
            } => write!(f, "{name} must be {expected}, got {}", Num(*value)),
            Self::InvalidWeight { name, value } => write!(
                f,
                "weights.{name} must be a finite number >= 0, got {}",
                Num(*value)
            ),
            Self::ZeroWeights => write!(
                f,
                "weights must not all be zero (performance, cost, reliability, capabilities)"
            ),
        }
    }
}

impl std::error::Error for ScoringError {}
