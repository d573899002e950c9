//! Errors of the rate-limiting core. Every message names the offending value so a
//! caller several hops away can tell what to fix.

use std::fmt;

/// Why a limit could not be built or a request could not be judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LimitError {
    /// Bucket capacity is NaN, infinite, zero or negative.
    InvalidCapacity(f64),
    /// Refill rate is NaN, infinite or negative.
    InvalidRefill(f64),
    /// `requests_per_minute` is NaN, infinite, negative, or between 0 and 1 (a
    /// request bucket smaller than one request could never admit anything).
    InvalidRequestLimit(f64),
    /// `tokens_per_minute` is NaN, infinite or negative.
    InvalidTokenLimit(f64),
    /// An amount to take or give back is NaN, infinite or negative; `name` is the
    /// parameter as the caller knows it (`amount`, `tokens`).
    InvalidAmount { name: &'static str, value: f64 },
    /// A clock reading is NaN or infinite.
    InvalidTime(f64),
    /// The amount can never be taken: it is more than the bucket holds when full.
    ExceedsCapacity { needed: f64, capacity: f64 },
    /// A request asks for more tokens than the per-minute limit allows at all.
    ExceedsTokenLimit { needed: f64, per_minute: f64 },
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::InvalidCapacity(v) => {
                write!(f, "capacity must be a finite number > 0, got {}", Num(v))
            }
            Self::InvalidRefill(v) => {
                write!(
                    f,
                    "refill rate must be a finite number >= 0, got {}",
                    Num(v)
                )
            }
            Self::InvalidRequestLimit(v) => write!(
                f,
                "requests_per_minute must be 0 (unlimited) or a finite number >= 1, got {}",
                Num(v)
            ),
            Self::InvalidTokenLimit(v) => write!(
                f,
                "tokens_per_minute must be 0 (unlimited) or a finite number > 0, got {}",
                Num(v)
            ),
            Self::InvalidAmount { name, value } => {
                write!(f, "{name} must be a finite number >= 0, got {}", Num(value))
            }
            Self::InvalidTime(v) => write!(f, "time must be a finite number, got {}", Num(v)),
            Self::ExceedsCapacity { needed, capacity } => write!(
                f,
                "amount {} exceeds the bucket capacity of {}",
                Num(needed),
                Num(capacity)
            ),
            Self::ExceedsTokenLimit { needed, per_minute } => write!(
                f,
                "request needs {} tokens but the limit allows at most {} per minute",
                Num(needed),
                Num(per_minute)
            ),
        }
    }
}

impl std::error::Error for LimitError {}

/// Formats a float the way a person reads it: `5000`, `0.5`, `NaN`, `1e30`.
/// Rust's `Display` would spell 1e30 with thirty zeros.
pub(crate) struct Num(pub(crate) f64);

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_finite() && self.0 != 0.0 && !(1e-6..1e15).contains(&self.0.abs()) {
            write!(f, "{:e}", self.0)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_problem_and_value() {
        assert_eq!(
            LimitError::InvalidCapacity(f64::NAN).to_string(),
            "capacity must be a finite number > 0, got NaN"
        );
        assert_eq!(
            LimitError::ExceedsTokenLimit {
                needed: 5000.0,
                per_minute: 4000.0
            }
            .to_string(),
            "request needs 5000 tokens but the limit allows at most 4000 per minute"
        );
        assert_eq!(
            LimitError::InvalidRequestLimit(0.5).to_string(),
            "requests_per_minute must be 0 (unlimited) or a finite number >= 1, got 0.5"
        );
        assert_eq!(
            LimitError::InvalidTokenLimit(-1.0).to_string(),
            "tokens_per_minute must be 0 (unlimited) or a finite number > 0, got -1"
        );
    }

    #[test]
    fn huge_and_tiny_numbers_use_exponent_notation() {
        assert_eq!(Num(1e30).to_string(), "1e30");
        assert_eq!(Num(2.5e-9).to_string(), "2.5e-9");
        assert_eq!(Num(f64::INFINITY).to_string(), "inf");
        assert_eq!(Num(-0.0).to_string(), "-0");
    }
}
