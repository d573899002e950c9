//! Errors of the shared limits table.

use std::fmt;

use crate::token_bucket::BucketError;

/// Why the shared table could not be opened or could not judge a request.
#[derive(Debug, Clone, PartialEq)]
pub enum SharedLimitsError {
    /// The file could not be opened, sized or mapped (`cause`: the system's words).
    File { path: String, cause: String },
    /// The file holds something else: another layout, slot count or a stray file.
    Layout { path: String, problem: String },
    /// Every slot of a kind holds a live bucket or counter; `kind` is "bucket" or "counter".
    Full { kind: &'static str, slots: u64 },
    /// A slot count is 0 or too large for one file.
    InvalidSlots { kind: &'static str, value: u64 },
    /// A bucket's parameters or an amount are out of range.
    Bucket(BucketError),
}

impl fmt::Display for SharedLimitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File { path, cause } => write!(f, "shared limits file {path}: {cause}"),
            Self::Layout { path, problem } => write!(f, "shared limits file {path}: {problem}"),
            Self::Full { kind, slots } => write!(
                f,
                "the shared limits table is full: all {slots} {kind} slots are in use"
            ),
            Self::InvalidSlots { kind, value } => write!(
                f,
                "{kind} slots must be between 1 and {}, got {value}",
                super::region::MAX_SLOTS
            ),
            Self::Bucket(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for SharedLimitsError {}

impl From<BucketError> for SharedLimitsError {
    fn from(err: BucketError) -> Self {
        Self::Bucket(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_file_and_the_problem() {
        let full = SharedLimitsError::Full {
            kind: "bucket",
            slots: 8,
        };
        assert_eq!(
            full.to_string(),
            "the shared limits table is full: all 8 bucket slots are in use"
        );
        let layout = SharedLimitsError::Layout {
            path: "/dev/shm/x".into(),
            problem: "not a modelyard limits table".into(),
        };
        assert_eq!(
            layout.to_string(),
            "shared limits file /dev/shm/x: not a modelyard limits table"
        );
        let slots = SharedLimitsError::InvalidSlots {
            kind: "counter",
            value: 0,
        };
        assert_eq!(
            slots.to_string(),
            "counter slots must be between 1 and 16777216, got 0"
        );
    }
}
