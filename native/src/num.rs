//! How the core spells a number in text meant for people (error messages,
//! rejection reasons), so a caller several hops away can read the offending value.

use std::fmt;

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
    fn huge_and_tiny_numbers_use_exponent_notation() {
        assert_eq!(Num(1e30).to_string(), "1e30");
        assert_eq!(Num(2.5e-9).to_string(), "2.5e-9");
        assert_eq!(Num(f64::INFINITY).to_string(), "inf");
        assert_eq!(Num(-0.0).to_string(), "-0");
        assert_eq!(Num(5000.0).to_string(), "5000");
    }
}
