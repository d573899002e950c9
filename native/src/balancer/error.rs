//! Errors of the load balancer and its outlier policy. `NoneUsable` is the
//! backends' fault (the PyO3 layer raises BackendUnavailable); every other
//! variant is the caller's (InvalidRequest).

use std::fmt;

use super::strategy::Strategy;
use crate::num::Num;

/// Why a pool or policy could not be built or a call could not be served.
#[derive(Debug, Clone, PartialEq)]
pub enum BalanceError {
    /// A pool of no deployments.
    NoDeployments,
    /// A parameter is NaN, infinite or out of range; `name` is the parameter as
    /// the caller knows it.
    InvalidParameter {
        name: &'static str,
        expected: &'static str,
        value: f64,
    },
    /// No strategy has this name.
    UnknownStrategy(String),
    /// A deployment index (as the caller passed it) beyond the pool.
    IndexOutOfRange { index: i64, len: usize },
    /// No deployment is usable; how many were unhealthy, and how many of the
    /// healthy ones ejected.
    NoneUsable {
        total: usize,
        unhealthy: usize,
        ejected: usize,
    },
}

impl fmt::Display for BalanceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDeployments => write!(f, "no deployments"),
            Self::InvalidParameter {
                name,
                expected,
                value,
            } => write!(f, "{name} must be {expected}, got {}", Num(*value)),
            Self::UnknownStrategy(name) => write!(
                f,
                "unknown strategy '{name}'; valid: {}",
                Strategy::names().join(", ")
            ),
            Self::IndexOutOfRange { index, len } => write!(
                f,
                "deployment index {index} is out of range for a pool of {len}"
            ),
            Self::NoneUsable {
                total,
                unhealthy,
                ejected,
            } => write!(
                f,
                "no usable deployment among {total}: {unhealthy} unhealthy, {ejected} ejected"
            ),
        }
    }
}

impl std::error::Error for BalanceError {}
