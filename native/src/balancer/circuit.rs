//! One deployment's circuit breaker, driven by the pool's picks and finishes.
//!
//! ```text
//! CLOSED --N failures in a row-----------> OPEN for period k = base × 2^(k-1), at most max
//! OPEN --period over---------------------> HALF-OPEN, waiting for a probe
//! HALF-OPEN --the next pick--------------> the probe is out: no other pick gets it
//!   the probe succeeds                   -> CLOSED (failures and period back to base)
//!   the probe fails                      -> OPEN for period k + 1
//!   no finish within probe_timeout_s     -> OPEN for period k + 1, from the timeout
//! ```
//!
//! Time is the caller's `now` (monotonic seconds), so tests drive it. A leaked
//! probe's timeout is applied when the circuit is next read, so no timer runs.
//!
//! Which finish is the probe's: the pool's `finish` carries no token, but it
//! carries the call's latency, so the call began at `now - latency`. While a
//! circuit is not closed only the probe can have started after it last opened
//! (the circuit admitted no one else); calls that were in flight when it opened
//! are older, and their outcomes are ignored: they say nothing new. The margin
//! is a whole open period, so the caller's latency clock need only roughly
//! agree with `now`.

use super::outlier::OutlierPolicy;

/// A circuit as callers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitPhase {
    /// In rotation.
    Closed,
    /// Out of rotation until its open period ends.
    Open,
    /// The open period is over: the next pick gets the deployment as the one
    /// probe, and no other pick gets it until the probe's finish decides.
    HalfOpen,
}

impl CircuitPhase {
    /// The name Python sees.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
enum Status {
    #[default]
    Closed,
    /// Open, or half-open waiting for its probe once `open_until` has passed.
    Open,
    /// Half-open with the probe out since `since`.
    Probing { since: f64 },
}

/// One deployment's failure history and circuit.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Circuit {
    status: Status,
    consecutive_failures: u32,
    /// Open periods of the current outage; 0 while closed.
    openings: u32,
    /// When the latest open period began and ends (monotonic seconds); 0 before
    /// the first. `open_until` stays after the circuit closes, for `stats`.
    opened_at: f64,
    open_until: f64,
}

impl Circuit {
    pub fn is_closed(&self) -> bool {
        self.status == Status::Closed
    }

    pub fn phase(&self, policy: &OutlierPolicy, now: f64) -> CircuitPhase {
        let settled = self.settled(policy, now);
        match settled.status {
            Status::Closed => CircuitPhase::Closed,
            Status::Open if now < settled.open_until => CircuitPhase::Open,
            Status::Open | Status::Probing { .. } => CircuitPhase::HalfOpen,
        }
    }

    /// Whether the next pick should take this deployment as its probe.
    pub fn awaits_probe(&self, policy: &OutlierPolicy, now: f64) -> bool {
        let settled = self.settled(policy, now);
        settled.status == Status::Open && now >= settled.open_until
    }

    /// Hands the probe out at `now`; call only when `awaits_probe`.
    pub fn claim_probe(&mut self, policy: &OutlierPolicy, now: f64) {
        *self = self.settled(policy, now);
        debug_assert!(self.status == Status::Open && now >= self.open_until);
        self.status = Status::Probing { since: now };
    }

    /// Records the outcome of a call that began at `started`, and says whether a
    /// closed circuit has now failed often enough to open (the pool decides,
    /// within its cap, and calls `open`). A probe's outcome closes or reopens the
    /// circuit here.
    pub fn record(&mut self, policy: &OutlierPolicy, ok: bool, started: f64, now: f64) -> bool {
        *self = self.settled(policy, now);
        match self.status {
            Status::Closed if ok => {
                self.consecutive_failures = 0;
                false
            }
            Status::Closed => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.consecutive_failures >= policy.consecutive_failures()
            }
            Status::Probing { .. } if started >= self.opened_at => {
                if ok {
                    self.close();
                } else {
                    self.open(policy, now);
                }
                false
            }
            // Calls in flight since before the circuit opened.
            Status::Open | Status::Probing { .. } => false,
        }
    }

    /// Opens the circuit from `now` for the outage's next period. The failure
    /// count restarts, so a deployment that closes again gets N more chances.
    pub fn open(&mut self, policy: &OutlierPolicy, now: f64) {
        self.openings = self.openings.saturating_add(1);
        self.status = Status::Open;
        self.opened_at = now;
        self.open_until = now + policy.ejection_seconds(self.openings);
        self.consecutive_failures = 0;
    }

    /// End of the latest open period; 0 when never opened.
    pub fn ejected_until(&self) -> f64 {
        self.open_until
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    fn close(&mut self) {
        self.status = Status::Closed;
        self.openings = 0;
        self.consecutive_failures = 0;
    }

    /// The circuit at `now`: a probe out for `probe_timeout_s` or more counts as
    /// failed at its deadline, opening the next period from then.
    fn settled(&self, policy: &OutlierPolicy, now: f64) -> Self {
        let mut settled = *self;
        if let Status::Probing { since } = self.status {
            let deadline = since + policy.probe_timeout_s();
            if now >= deadline {
                settled.open(policy, deadline);
            }
        }
        settled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 3 failures open; periods 10, 20, 40, capped at 40; a probe may take 5 s.
    fn policy() -> OutlierPolicy {
        OutlierPolicy::new(3, 10.0, 40.0, 5.0, 1.0).unwrap()
    }

    /// Fails a closed circuit until it asks to open, and opens it at `now`.
    fn opened(p: &OutlierPolicy, now: f64) -> Circuit {
        let mut c = Circuit::default();
        assert!(!c.record(p, false, now, now));
        assert!(!c.record(p, false, now, now));
        assert!(c.record(p, false, now, now));
        c.open(p, now);
        c
    }

    #[test]
    fn n_failures_in_a_row_ask_to_open_and_a_success_resets_them() {
        let p = policy();
        let mut c = Circuit::default();
        assert!(!c.record(&p, false, 0.0, 0.0));
        assert!(!c.record(&p, false, 0.0, 0.0));
        assert!(!c.record(&p, true, 0.0, 0.0));
        assert_eq!(c.consecutive_failures(), 0);
        assert!(!c.record(&p, false, 0.0, 0.0));
        assert!(!c.record(&p, false, 0.0, 0.0));
        assert!(c.record(&p, false, 0.0, 0.0));
        assert_eq!(c.phase(&p, 0.0), CircuitPhase::Closed);
    }

    #[test]
    fn open_for_the_base_period_then_half_open() {
        let p = policy();
        let c = opened(&p, 100.0);
        assert_eq!((c.ejected_until(), c.consecutive_failures()), (110.0, 0));
        assert_eq!(c.phase(&p, 109.9), CircuitPhase::Open);
        assert!(!c.awaits_probe(&p, 109.9));
        assert_eq!(c.phase(&p, 110.0), CircuitPhase::HalfOpen);
        assert!(c.awaits_probe(&p, 110.0));
    }

    #[test]
    fn a_claimed_probe_is_the_only_one() {
        let p = policy();
        let mut c = opened(&p, 100.0);
        c.claim_probe(&p, 110.0);
        assert_eq!(c.phase(&p, 111.0), CircuitPhase::HalfOpen);
        assert!(!c.awaits_probe(&p, 111.0));
        assert!(!c.is_closed());
    }

    #[test]
    fn a_successful_probe_closes_and_the_next_outage_starts_at_base() {
        let p = policy();
        let mut c = opened(&p, 100.0);
        c.claim_probe(&p, 110.0);
        assert!(!c.record(&p, false, 110.0, 111.0));
        c.claim_probe(&p, 131.0);
        assert!(!c.record(&p, true, 131.0, 132.0));
        assert_eq!(c.phase(&p, 132.0), CircuitPhase::Closed);
        let again = {
            let mut c = c;
            for _ in 0..2 {
                c.record(&p, false, 140.0, 140.0);
            }
            assert!(c.record(&p, false, 140.0, 140.0));
            c.open(&p, 140.0);
            c
        };
        assert_eq!(again.ejected_until(), 150.0);
    }

    #[test]
    fn failed_probes_double_the_period_up_to_the_cap() {
        let p = policy();
        let mut c = opened(&p, 0.0);
        let mut periods = vec![c.ejected_until()];
        for _ in 0..4 {
            let at = c.ejected_until();
            c.claim_probe(&p, at);
            c.record(&p, false, at, at + 1.0);
            periods.push(c.ejected_until() - (at + 1.0));
        }
        assert_eq!(periods, vec![10.0, 20.0, 40.0, 40.0, 40.0]);
    }

    #[test]
    fn calls_older_than_the_opening_do_not_decide() {
        let p = policy();
        let mut c = opened(&p, 100.0);
        // In flight when it opened: ignored while open and while the probe is out.
        assert!(!c.record(&p, true, 99.0, 105.0));
        assert_eq!(c.phase(&p, 105.0), CircuitPhase::Open);
        c.claim_probe(&p, 110.0);
        assert!(!c.record(&p, true, 99.5, 111.0));
        assert_eq!(c.phase(&p, 111.0), CircuitPhase::HalfOpen);
        // The probe itself began at 110.0, after the opening.
        assert!(!c.record(&p, true, 110.0, 112.0));
        assert_eq!(c.phase(&p, 112.0), CircuitPhase::Closed);
    }

    #[test]
    fn a_leaked_probe_times_out_into_the_next_open_period() {
        let p = policy();
        let mut c = opened(&p, 100.0);
        c.claim_probe(&p, 110.0);
        assert_eq!(c.phase(&p, 114.9), CircuitPhase::HalfOpen);
        // Deadline 115: open from then for the second period, 20 s.
        assert_eq!(c.phase(&p, 115.0), CircuitPhase::Open);
        assert_eq!(c.phase(&p, 134.9), CircuitPhase::Open);
        assert!(c.awaits_probe(&p, 135.0));
        // The leaked probe's late finish is older than that opening: ignored.
        assert!(!c.record(&p, true, 110.0, 136.0));
        assert!(c.awaits_probe(&p, 136.0));
        c.claim_probe(&p, 136.0);
        c.record(&p, false, 136.0, 137.0);
        // The third period: 40 s from the failed probe.
        assert_eq!(c.ejected_until(), 177.0);
    }

    #[test]
    fn phases_are_named_for_python() {
        let names = [
            CircuitPhase::Closed,
            CircuitPhase::Open,
            CircuitPhase::HalfOpen,
        ]
        .map(CircuitPhase::name);
        assert_eq!(names, ["closed", "open", "half_open"]);
    }
}
