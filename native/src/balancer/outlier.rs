//! The outlier policy: after how many failures in a row a deployment's circuit
//! opens, how long each open period lasts (doubling up to a ceiling), how long
//! a probe may take, and how much of a pool may be out at once.
//!
//! The share of a pool whose circuits are not closed is capped (the pool
//! enforces it with `max_ejected`): when every deployment fails together the
//! fault is more likely upstream or in the caller, and ejecting them all would
//! turn a partial outage into a total one. The per-deployment state machine is
//! `circuit`'s.

use super::error::BalanceError;

/// When to open a deployment's circuit and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutlierPolicy {
    consecutive_failures: u32,
    base_ejection_s: f64,
    max_ejection_s: f64,
    probe_timeout_s: f64,
    max_ejected_share: f64,
}

impl OutlierPolicy {
    /// `consecutive_failures` >= 1; ejection times finite with 0 < base <= max;
    /// `probe_timeout_s` finite and > 0; `max_ejected_share` within [0, 1].
    pub fn new(
        consecutive_failures: u32,
        base_ejection_s: f64,
        max_ejection_s: f64,
        probe_timeout_s: f64,
        max_ejected_share: f64,
    ) -> Result<Self, BalanceError> {
        let invalid = |name, expected, value| BalanceError::InvalidParameter {
            name,
            expected,
            value,
        };
        if consecutive_failures == 0 {
            return Err(invalid("consecutive_failures", "an integer >= 1", 0.0));
        }
        if !(base_ejection_s.is_finite() && base_ejection_s > 0.0) {
            return Err(invalid(
                "base_ejection_s",
                "a finite number > 0",
                base_ejection_s,
            ));
        }
        if !(max_ejection_s.is_finite() && max_ejection_s >= base_ejection_s) {
            return Err(invalid(
                "max_ejection_s",
                "a finite number >= base_ejection_s",
                max_ejection_s,
            ));
        }
        if !(probe_timeout_s.is_finite() && probe_timeout_s > 0.0) {
            return Err(invalid(
                "probe_timeout_s",
                "a finite number > 0",
                probe_timeout_s,
            ));
        }
        if !(0.0..=1.0).contains(&max_ejected_share) {
            return Err(invalid(
                "max_ejected_share",
                "a number between 0 and 1",
                max_ejected_share,
            ));
        }
        Ok(Self {
            consecutive_failures,
            base_ejection_s,
            max_ejection_s,
            probe_timeout_s,
            max_ejected_share,
        })
    }

    /// Failures in a row that open a closed circuit.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// How long a probe may stay out before it counts as failed.
    pub fn probe_timeout_s(&self) -> f64 {
        self.probe_timeout_s
    }

    /// Most deployments of a pool of `pool_size` whose circuits may be out of
    /// closed at once: the share rounded down, so at the default share of one half
    /// a pool of one is never emptied by ejection.
    pub fn max_ejected(&self, pool_size: usize) -> usize {
        // The epsilon keeps 0.3 * 10 at 3 despite binary rounding.
        (self.max_ejected_share * pool_size as f64 + 1e-9).floor() as usize
    }

    /// Seconds the `n`-th open period (1-based) of one outage lasts: base ×
    /// 2^(n-1), at most max.
    pub fn ejection_seconds(&self, n: u32) -> f64 {
        let doublings = n.saturating_sub(1).min(1023) as i32;
        (self.base_ejection_s * 2f64.powi(doublings)).min(self.max_ejection_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> OutlierPolicy {
        OutlierPolicy::new(3, 30.0, 100.0, 60.0, 0.5).unwrap()
    }

    #[test]
    fn ejection_time_doubles_up_to_the_ceiling() {
        let p = policy();
        let times: Vec<f64> = (1..=4).map(|n| p.ejection_seconds(n)).collect();
        assert_eq!(times, vec![30.0, 60.0, 100.0, 100.0]);
        assert_eq!(p.ejection_seconds(u32::MAX), 100.0);
    }

    #[test]
    fn the_cap_rounds_down() {
        let p = policy();
        assert_eq!([1, 2, 3, 10].map(|n| p.max_ejected(n)), [0, 1, 1, 5]);
        let p = OutlierPolicy::new(1, 1.0, 1.0, 1.0, 0.3).unwrap();
        assert_eq!(p.max_ejected(10), 3);
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(OutlierPolicy::new(0, 1.0, 1.0, 1.0, 0.5).is_err());
        assert!(OutlierPolicy::new(1, 0.0, 1.0, 1.0, 0.5).is_err());
        assert!(OutlierPolicy::new(1, f64::NAN, 1.0, 1.0, 0.5).is_err());
        assert!(OutlierPolicy::new(1, 2.0, 1.0, 1.0, 0.5).is_err());
        assert!(OutlierPolicy::new(1, 1.0, f64::INFINITY, 1.0, 0.5).is_err());
        assert_eq!(
            OutlierPolicy::new(1, 1.0, 1.0, 0.0, 0.5)
                .unwrap_err()
                .to_string(),
            "probe_timeout_s must be a finite number > 0, got 0"
        );
        assert!(OutlierPolicy::new(1, 1.0, 1.0, f64::NAN, 0.5).is_err());
        assert_eq!(
            OutlierPolicy::new(1, 1.0, 1.0, 1.0, 1.5)
                .unwrap_err()
                .to_string(),
            "max_ejected_share must be a number between 0 and 1, got 1.5"
        );
    }
}
