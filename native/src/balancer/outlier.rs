//! Outlier ejection: take a deployment out of rotation after N consecutive
//! failures, for a time that doubles with each ejection up to a ceiling.
//!
//! The share of a pool ejected at once is capped (the pool enforces it with
//! `max_ejected`): when every deployment fails together the fault is more likely
//! upstream or in the caller, and ejecting them all would turn a partial outage
//! into a total one.

use super::error::BalanceError;

/// When to eject and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutlierPolicy {
    consecutive_failures: u32,
    base_ejection_s: f64,
    max_ejection_s: f64,
    max_ejected_share: f64,
}

/// One deployment's failure history.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OutlierState {
    consecutive_failures: u32,
    consecutive_successes: u32,
    /// Ejections since the last streak of `consecutive_failures` successes.
    ejections: u32,
    /// Monotonic seconds; 0 when never ejected.
    ejected_until: f64,
}

impl OutlierPolicy {
    /// `consecutive_failures` >= 1; ejection times finite with 0 < base <= max;
    /// `max_ejected_share` within [0, 1].
    pub fn new(
        consecutive_failures: u32,
        base_ejection_s: f64,
        max_ejection_s: f64,
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
            max_ejected_share,
        })
    }

    /// Most deployments of a pool of `pool_size` that may be ejected at once:
    /// the share rounded down, so a pool of one is never emptied by ejection.
    pub fn max_ejected(&self, pool_size: usize) -> usize {
        // The epsilon keeps 0.3 * 10 at 3 despite binary rounding.
        (self.max_ejected_share * pool_size as f64 + 1e-9).floor() as usize
    }

    /// Seconds the `n`-th ejection (1-based) lasts: base × 2^(n-1), at most max.
    pub fn ejection_seconds(&self, n: u32) -> f64 {
        let doublings = n.saturating_sub(1).min(1023) as i32;
        (self.base_ejection_s * 2f64.powi(doublings)).min(self.max_ejection_s)
    }

    /// Records a call's outcome and says whether the deployment has now failed
    /// often enough to be ejected. Outcomes while ejected are ignored: they come
    /// from calls started before the ejection and say nothing new.
    pub fn record(&self, state: &mut OutlierState, ok: bool, now: f64) -> bool {
        if state.is_ejected(now) {
            return false;
        }
        if ok {
            state.consecutive_failures = 0;
            state.consecutive_successes = state.consecutive_successes.saturating_add(1);
            if state.consecutive_successes >= self.consecutive_failures {
                // As many successes in a row as it takes failures to eject: forgiven.
                state.ejections = 0;
            }
            false
        } else {
            state.consecutive_successes = 0;
            state.consecutive_failures = state.consecutive_failures.saturating_add(1);
            state.consecutive_failures >= self.consecutive_failures
        }
    }

    /// Ejects from `now`. The failure count restarts so a returning deployment
    /// gets N more chances; the ejection count drives the next, longer, ejection.
    pub fn eject(&self, state: &mut OutlierState, now: f64) {
        state.ejections = state.ejections.saturating_add(1);
        state.ejected_until = now + self.ejection_seconds(state.ejections);
        state.consecutive_failures = 0;
    }
}

impl OutlierState {
    pub fn is_ejected(&self, now: f64) -> bool {
        now < self.ejected_until
    }

    pub fn ejected_until(&self) -> f64 {
        self.ejected_until
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> OutlierPolicy {
        OutlierPolicy::new(3, 30.0, 100.0, 0.5).unwrap()
    }

    #[test]
    fn ejection_time_doubles_up_to_the_ceiling() {
        let p = policy();
        let times: Vec<f64> = (1..=4).map(|n| p.ejection_seconds(n)).collect();
        assert_eq!(times, vec![30.0, 60.0, 100.0, 100.0]);
        assert_eq!(p.ejection_seconds(u32::MAX), 100.0);
    }

    #[test]
    fn n_consecutive_failures_call_for_ejection() {
        let p = policy();
        let mut s = OutlierState::default();
        assert!(!p.record(&mut s, false, 0.0));
        assert!(!p.record(&mut s, false, 0.0));
        assert!(!p.record(&mut s, true, 0.0));
        assert!(!p.record(&mut s, false, 0.0));
        assert!(!p.record(&mut s, false, 0.0));
        assert!(p.record(&mut s, false, 0.0));
        p.eject(&mut s, 10.0);
        assert!(s.is_ejected(39.9) && !s.is_ejected(40.0));
        // Late results from before the ejection are ignored.
        assert!(!p.record(&mut s, false, 20.0));
        assert_eq!(s.consecutive_failures(), 0);
    }

    #[test]
    fn repeat_offenders_stay_out_longer_until_forgiven() {
        let p = policy();
        let mut s = OutlierState::default();
        p.eject(&mut s, 0.0);
        p.eject(&mut s, 30.0);
        assert_eq!(s.ejected_until(), 90.0);
        for _ in 0..3 {
            p.record(&mut s, true, 100.0);
        }
        p.eject(&mut s, 200.0);
        assert_eq!(s.ejected_until(), 230.0);
    }

    /// Kills `consecutive_successes >= consecutive_failures` → `<`: fewer
    /// successes in a row than it takes failures to eject do not forgive.
    #[test]
    fn fewer_successes_than_the_threshold_do_not_forgive() {
        let p = policy();
        let mut s = OutlierState::default();
        p.eject(&mut s, 0.0);
        p.eject(&mut s, 30.0);
        for _ in 0..2 {
            p.record(&mut s, true, 100.0);
        }
        p.eject(&mut s, 200.0);
        // The third ejection: 30 s doubled twice, capped at 100 s.
        assert_eq!(s.ejected_until(), 300.0);
    }

    #[test]
    fn the_cap_rounds_down() {
        let p = policy();
        assert_eq!([1, 2, 3, 10].map(|n| p.max_ejected(n)), [0, 1, 1, 5]);
        let p = OutlierPolicy::new(1, 1.0, 1.0, 0.3).unwrap();
        assert_eq!(p.max_ejected(10), 3);
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(OutlierPolicy::new(0, 1.0, 1.0, 0.5).is_err());
        assert!(OutlierPolicy::new(1, 0.0, 1.0, 0.5).is_err());
        assert!(OutlierPolicy::new(1, f64::NAN, 1.0, 0.5).is_err());
        assert!(OutlierPolicy::new(1, 2.0, 1.0, 0.5).is_err());
        assert_eq!(
            OutlierPolicy::new(1, 1.0, 1.0, 1.5)
                .unwrap_err()
                .to_string(),
            "max_ejected_share must be a number between 0 and 1, got 1.5"
        );
    }
}
