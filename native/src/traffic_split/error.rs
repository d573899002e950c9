//! Errors of the traffic split. Every variant is the caller's fault (the PyO3
//! layer raises InvalidRequest).

use std::fmt;

use crate::num::Num;

/// Why weights cannot split traffic.
#[derive(Debug, Clone, PartialEq)]
pub enum SplitError {
    /// No arms at all.
    NoArms,
    /// A weight is NaN, infinite or negative.
    InvalidWeight { index: usize, value: f64 },
    /// Every weight is zero: no arm could take a key.
    AllZero,
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoArms => write!(f, "weights must not be empty"),
            Self::InvalidWeight { index, value } => write!(
                f,
                "weights[{index}] must be a finite number >= 0, got {}",
                Num(*value)
            ),
            Self::AllZero => write!(f, "weights must not all be zero"),
        }
    }
}

impl std::error::Error for SplitError {}
