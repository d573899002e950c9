//! Each core error enum turned into its class of `modelyard_client.errors`.
//!
//! One `From` impl per enum, matching every variant by name (no `_` arm), so a
//! new variant does not compile until someone decides which class it raises;
//! `?` then converts at the boundary. The classes are imported the first time
//! one is raised, not when `modelyard._native` is imported, so importing the
//! native module never drags in grpc.

use pyo3::prelude::*;

use crate::balancer::BalanceError;
use crate::scoring::ScoringError;
use crate::shared_limits::SharedLimitsError;
use crate::token_bucket::BucketError;
use crate::traffic_split::SplitError;

pyo3::import_exception!(modelyard_client.errors, InvalidRequest);
pyo3::import_exception!(modelyard_client.errors, BackendUnavailable);

/// The caller passed a bad value.
pub(super) fn invalid_request(message: impl std::fmt::Display) -> PyErr {
    InvalidRequest::new_err(message.to_string())
}

impl From<BucketError> for PyErr {
    fn from(err: BucketError) -> Self {
        match err {
            BucketError::InvalidParameter { .. } | BucketError::ExceedsCapacity { .. } => {
                invalid_request(err)
            }
        }
    }
}

impl From<SharedLimitsError> for PyErr {
    fn from(err: SharedLimitsError) -> Self {
        match err {
            SharedLimitsError::Bucket(inner) => inner.into(),
            // Nothing can be judged until an operator gives the table more slots.
            SharedLimitsError::Full { .. } => BackendUnavailable::new_err(err.to_string()),
            SharedLimitsError::File { .. }
            | SharedLimitsError::Layout { .. }
            | SharedLimitsError::InvalidSlots { .. } => invalid_request(err),
        }
    }
}

impl From<ScoringError> for PyErr {
    fn from(err: ScoringError) -> Self {
        match err {
            ScoringError::NoCandidates
            | ScoringError::InvalidMetric { .. }
            | ScoringError::InvalidConstraint { .. }
            | ScoringError::InvalidWeight { .. }
            | ScoringError::ZeroWeights => invalid_request(err),
        }
    }
}

impl From<BalanceError> for PyErr {
    fn from(err: BalanceError) -> Self {
        match err {
            // The backends' fault, and worth a retry elsewhere or later.
            BalanceError::NoneUsable { .. } => BackendUnavailable::new_err(err.to_string()),
            BalanceError::NoDeployments
            | BalanceError::InvalidParameter { .. }
            | BalanceError::UnknownStrategy(_)
            | BalanceError::IndexOutOfRange { .. } => invalid_request(err),
        }
    }
}

impl From<SplitError> for PyErr {
    fn from(err: SplitError) -> Self {
        match err {
            SplitError::NoArms | SplitError::InvalidWeight { .. } | SplitError::AllZero => {
                invalid_request(err)
            }
        }
    }
}
