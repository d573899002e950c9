//! Errors of the token bucket. Every variant is the caller's fault (the PyO3
//! layer raises InvalidRequest).

use std::fmt;

use crate::num::Num;

/// Why a bucket could not be built or a take could not be judged.
#[derive(Debug, Clone, PartialEq)]
pub enum BucketError {
    /// A capacity, refill rate, amount or clock reading is NaN, infinite or out
    /// of range; `name` is the parameter as the caller knows it.
    InvalidParameter {
        name: &'static str,
        expected: &'static str,
        value: f64,
    },
    /// The amount can never be taken: it is more than the bucket holds when full.
    ExceedsCapacity { needed: f64, capacity: f64 },
}

impl fmt::Display for BucketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidParameter {
                name,
                expected,
                value,
            } => write!(f, "{name} must be {expected}, got {}", Num(*value)),
            Self::ExceedsCapacity { needed, capacity } => write!(
                f,
                "amount {} exceeds the bucket capacity of {}",
                Num(*needed),
                Num(*capacity)
            ),
        }
    }
}

impl std::error::Error for BucketError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_parameter_and_value() {
        let invalid = BucketError::InvalidParameter {
            name: "capacity",
            expected: "a finite number > 0",
            value: f64::NAN,
        };
        assert_eq!(
            invalid.to_string(),
            "capacity must be a finite number > 0, got NaN"
        );
        let too_much = BucketError::ExceedsCapacity {
            needed: 1e30,
            capacity: 4000.0,
        };
        assert_eq!(
            too_much.to_string(),
            "amount 1e30 exceeds the bucket capacity of 4000"
        );
    }
}
