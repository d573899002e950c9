//! A token bucket driven by an explicit clock.
//!
//! The caller passes `now` (monotonic seconds) to every call instead of the bucket
//! reading a clock, so tests can replay any timeline exactly.

mod error;

pub use error::BucketError;

/// The answer to "may I take this much now?".
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admission {
    /// Taken.
    Admitted,
    /// Nothing was taken; the amount is available after this many seconds
    /// (infinite when the bucket never refills).
    Wait(f64),
}

impl Admission {
    /// Seconds to wait: 0 when admitted.
    pub fn wait_seconds(self) -> f64 {
        match self {
            Self::Admitted => 0.0,
            Self::Wait(seconds) => seconds,
        }
    }
}

/// Relative slack when comparing the level with an amount, so a caller that sleeps
/// exactly the returned wait is admitted despite float rounding in the refill.
const SLACK: f64 = 1e-9;

/// Holds up to `capacity` units and refills continuously at `refill_per_sec`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    refill_per_sec: f64,
    level: f64,
    /// Latest clock reading seen, `None` before the first call. Never moves back,
    /// so a clock that jumps backwards cannot mint tokens.
    last: Option<f64>,
}

impl TokenBucket {
    /// A full bucket. `capacity` must be finite and > 0, `refill_per_sec` finite and >= 0.
    pub fn new(capacity: f64, refill_per_sec: f64) -> Result<Self, BucketError> {
        if !(capacity.is_finite() && capacity > 0.0) {
            return Err(BucketError::InvalidParameter {
                name: "capacity",
                expected: "a finite number > 0",
                value: capacity,
            });
        }
        if !(refill_per_sec.is_finite() && refill_per_sec >= 0.0) {
            return Err(BucketError::InvalidParameter {
                name: "refill rate",
                expected: "a finite number >= 0",
                value: refill_per_sec,
            });
        }
        Ok(Self {
            capacity,
            refill_per_sec,
            level: capacity,
            last: None,
        })
    }

    /// A bucket resumed from a state kept elsewhere (`level` and `last` as `state` gave
    /// them, e.g. from a shared-memory slot); a level out of [0, capacity] is clamped.
    pub fn resume(
        capacity: f64,
        refill_per_sec: f64,
        level: f64,
        last: Option<f64>,
    ) -> Result<Self, BucketError> {
        let mut bucket = Self::new(capacity, refill_per_sec)?;
        bucket.level = if level.is_nan() {
            capacity
        } else {
            level.clamp(0.0, capacity)
        };
        bucket.last = last.filter(|t| t.is_finite());
        Ok(bucket)
    }

    /// The level and the latest clock reading, for `resume`.
    pub fn state(&self) -> (f64, Option<f64>) {
        (self.level, self.last)
    }

    /// Most the bucket can hold.
    pub fn capacity(&self) -> f64 {
        self.capacity
    }

    /// Units added per second.
    pub fn refill_per_sec(&self) -> f64 {
        self.refill_per_sec
    }

    /// Takes `amount` if available at `now`; otherwise takes nothing and says how long
    /// until it would be.
    pub fn try_take(&mut self, amount: f64, now: f64) -> Result<Admission, BucketError> {
        check_amount(amount)?;
        check_time(now)?;
        if amount > self.capacity {
            return Err(BucketError::ExceedsCapacity {
                needed: amount,
                capacity: self.capacity,
            });
        }
        self.advance(now);
        let wait = self.wait_for(amount);
        if wait > 0.0 {
            return Ok(Admission::Wait(wait));
        }
        self.consume(amount);
        Ok(Admission::Admitted)
    }

    /// Returns `amount` to the bucket (for example tokens reserved but not used),
    /// never filling it beyond capacity.
    pub fn give_back(&mut self, amount: f64, now: f64) -> Result<(), BucketError> {
        check_amount(amount)?;
        check_time(now)?;
        self.advance(now);
        self.level = (self.level + amount).min(self.capacity);
        Ok(())
    }

    /// Units available at `now`.
    pub fn available(&mut self, now: f64) -> Result<f64, BucketError> {
        check_time(now)?;
        self.advance(now);
        Ok(self.level)
    }

    /// Adds what accrued since the last reading. `now` must be finite.
    fn advance(&mut self, now: f64) {
        match self.last {
            // Time stood still or went backwards: nothing accrues.
            Some(last) if now <= last => {}
            Some(last) => {
                let accrued = (now - last) * self.refill_per_sec;
                self.level = (self.level + accrued).min(self.capacity);
                self.last = Some(now);
            }
            None => self.last = Some(now),
        }
    }

    /// Seconds until `amount` is available (0 if it is now). Does not take anything.
    fn wait_for(&self, amount: f64) -> f64 {
        let shortfall = amount - self.level;
        if shortfall <= SLACK * self.capacity {
            0.0
        } else if self.refill_per_sec == 0.0 {
            f64::INFINITY
        } else {
            // Never report a zero wait for a rejection, even if the division underflows.
            (shortfall / self.refill_per_sec).max(f64::MIN_POSITIVE)
        }
    }

    /// Takes `amount`; the caller has checked `wait_for(amount) == 0`.
    fn consume(&mut self, amount: f64) {
        self.level = (self.level - amount).max(0.0);
    }
}

/// Rejects NaN, infinite and negative amounts.
fn check_amount(value: f64) -> Result<(), BucketError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(BucketError::InvalidParameter {
            name: "amount",
            expected: "a finite number >= 0",
            value,
        })
    }
}

/// Rejects NaN and infinite clock readings, which would poison the bucket's state.
fn check_time(now: f64) -> Result<(), BucketError> {
    if now.is_finite() {
        Ok(())
    } else {
        Err(BucketError::InvalidParameter {
            name: "time",
            expected: "a finite number",
            value: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_resumed_bucket_carries_on_from_its_state() {
        let mut bucket = TokenBucket::new(10.0, 2.0).unwrap();
        bucket.try_take(7.0, 1.0).unwrap();
        assert_eq!(bucket.state(), (3.0, Some(1.0)));
        let mut resumed = TokenBucket::resume(10.0, 2.0, 3.0, Some(1.0)).unwrap();
        assert_eq!(resumed.available(2.0), Ok(5.0));
        let clamped = TokenBucket::resume(10.0, 2.0, 12.0, None).unwrap();
        assert_eq!(clamped.state(), (10.0, None));
        let floored = TokenBucket::resume(10.0, 2.0, -1.0, Some(f64::NAN)).unwrap();
        assert_eq!(floored.state(), (0.0, None));
        assert!(TokenBucket::resume(0.0, 2.0, 1.0, None).is_err());
    }

    #[test]
    fn admits_up_to_capacity_then_says_how_long_to_wait() {
        let mut bucket = TokenBucket::new(10.0, 2.0).unwrap();
        assert_eq!(bucket.try_take(6.0, 0.0), Ok(Admission::Admitted));
        assert_eq!(bucket.try_take(4.0, 0.0), Ok(Admission::Admitted));
        assert_eq!(bucket.try_take(3.0, 0.0), Ok(Admission::Wait(1.5)));
        // A rejection takes nothing.
        assert_eq!(bucket.available(0.0), Ok(0.0));
        assert_eq!(bucket.try_take(3.0, 1.5), Ok(Admission::Admitted));
    }

    /// Kills the `capacity` and `refill_per_sec` getters returning a constant.
    #[test]
    fn reports_its_parameters() {
        let bucket = TokenBucket::new(250.0, 12.5).unwrap();
        assert_eq!((bucket.capacity(), bucket.refill_per_sec()), (250.0, 12.5));
    }

    #[test]
    fn waiting_exactly_the_returned_time_is_enough() {
        let mut bucket = TokenBucket::new(1000.0, 1000.0 / 60.0).unwrap();
        bucket.try_take(1000.0, 0.0).unwrap();
        let wait = bucket.try_take(333.0, 0.0).unwrap().wait_seconds();
        assert_eq!(bucket.try_take(333.0, wait), Ok(Admission::Admitted));
    }

    /// Kills `SLACK * capacity` → `SLACK / capacity`: the rounding slack scales
    /// with the bucket, so a million-unit bucket 1e-4 short (1e-10 of it) admits,
    /// and 1e-2 short (past the slack) does not.
    #[test]
    fn the_rounding_slack_is_relative_to_capacity() {
        for (short, admitted) in [(1e-4, true), (1e-2, false)] {
            let mut bucket = TokenBucket::new(1e6, 0.0).unwrap();
            bucket.try_take(1e6, 0.0).unwrap();
            bucket.give_back(5e5 - short, 0.0).unwrap();
            let got = bucket.try_take(5e5, 0.0).unwrap();
            assert_eq!(
                got == Admission::Admitted,
                admitted,
                "{short} short: {got:?}"
            );
        }
    }

    #[test]
    fn refill_stops_at_capacity() {
        let mut bucket = TokenBucket::new(5.0, 1.0).unwrap();
        bucket.try_take(5.0, 0.0).unwrap();
        assert_eq!(bucket.available(2.0), Ok(2.0));
        assert_eq!(bucket.available(1000.0), Ok(5.0));
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let mut bucket = TokenBucket::new(10.0, 1.0).unwrap();
        bucket.try_take(10.0, 100.0).unwrap();
        assert_eq!(bucket.available(50.0), Ok(0.0));
        // The clock must pass 100 again before anything accrues.
        assert_eq!(bucket.available(99.0), Ok(0.0));
        assert_eq!(bucket.available(103.0), Ok(3.0));
    }

    #[test]
    fn a_bucket_that_never_refills_waits_forever() {
        let mut bucket = TokenBucket::new(1.0, 0.0).unwrap();
        bucket.try_take(1.0, 0.0).unwrap();
        assert_eq!(
            bucket.try_take(1.0, 1e9),
            Ok(Admission::Wait(f64::INFINITY))
        );
    }

    #[test]
    fn give_back_is_capped_at_capacity() {
        let mut bucket = TokenBucket::new(10.0, 0.0).unwrap();
        bucket.try_take(4.0, 0.0).unwrap();
        bucket.give_back(3.0, 0.0).unwrap();
        assert_eq!(bucket.available(0.0), Ok(9.0));
        bucket.give_back(100.0, 0.0).unwrap();
        assert_eq!(bucket.available(0.0), Ok(10.0));
    }

    #[test]
    fn rejects_bad_parameters() {
        for bad in [f64::NAN, f64::INFINITY, -1.0, 0.0] {
            assert!(matches!(
                TokenBucket::new(bad, 1.0),
                Err(BucketError::InvalidParameter {
                    name: "capacity",
                    ..
                })
            ));
        }
        for bad in [f64::NAN, f64::INFINITY, -0.5] {
            assert!(matches!(
                TokenBucket::new(1.0, bad),
                Err(BucketError::InvalidParameter {
                    name: "refill rate",
                    ..
                })
            ));
        }
        assert_eq!(
            TokenBucket::new(1.0, -0.5).unwrap_err().to_string(),
            "refill rate must be a finite number >= 0, got -0.5"
        );
        assert!(TokenBucket::new(1.0, 0.0).is_ok());
    }

    #[test]
    fn rejects_bad_amounts_and_times() {
        let mut bucket = TokenBucket::new(10.0, 1.0).unwrap();
        assert_eq!(
            bucket.try_take(11.0, 0.0),
            Err(BucketError::ExceedsCapacity {
                needed: 11.0,
                capacity: 10.0
            })
        );
        for bad in [f64::NAN, -1.0, f64::INFINITY] {
            assert!(matches!(
                bucket.try_take(bad, 0.0),
                Err(BucketError::InvalidParameter { name: "amount", .. })
            ));
            assert!(matches!(
                bucket.give_back(bad, 0.0),
                Err(BucketError::InvalidParameter { name: "amount", .. })
            ));
        }
        assert!(matches!(
            bucket.try_take(1.0, f64::NAN),
            Err(BucketError::InvalidParameter { name: "time", .. })
        ));
        // Errors leave the bucket untouched.
        assert_eq!(bucket.available(0.0), Ok(10.0));
    }

    /// One step of a random timeline: advance the clock, then take or give back.
    #[derive(Debug, Clone)]
    enum Step {
        Take { dt: f64, amount: f64 },
        GiveBack { dt: f64, amount: f64 },
    }

    fn steps(capacity: f64) -> impl Strategy<Value = Vec<Step>> {
        let amount = 0.0..capacity * 1.5;
        let step = prop_oneof![
            3 => (0.0..5.0f64, amount.clone()).prop_map(|(dt, amount)| Step::Take { dt, amount }),
            1 => (-5.0..5.0f64, amount).prop_map(|(dt, amount)| Step::GiveBack { dt, amount }),
        ];
        prop::collection::vec(step, 1..200)
    }

    proptest! {
        /// Over any window [a, b] of a monotonic timeline without refunds, the bucket
        /// admits at most `capacity + refill * (b - a)`.
        #[test]
        fn never_admits_more_than_capacity_plus_refill(
            capacity in 0.1..1000.0f64,
            refill in 0.0..100.0f64,
            takes in prop::collection::vec((0.0..5.0f64, 0.0..1.0f64), 1..200),
        ) {
            let mut bucket = TokenBucket::new(capacity, refill).unwrap();
            let mut now = 0.0;
            let mut admitted: Vec<(f64, f64)> = Vec::new();
            for (dt, fraction) in takes {
                now += dt;
                let amount = fraction * capacity;
                if bucket.try_take(amount, now).unwrap() == Admission::Admitted {
                    admitted.push((now, amount));
                }
            }
            for (i, &(start, _)) in admitted.iter().enumerate() {
                let mut total = 0.0;
                for &(end, amount) in &admitted[i..] {
                    total += amount;
                    let bound = capacity + refill * (end - start);
                    // Float slack: SLACK per admission plus rounding in the sums.
                    let tolerance = 1e-9 * bound + SLACK * capacity * admitted.len() as f64;
                    prop_assert!(total <= bound + tolerance, "{total} > {bound} in [{start}, {end}]");
                }
            }
        }

        /// Whatever is taken and given back, in whatever clock order, the level stays
        /// within [0, capacity].
        #[test]
        fn level_stays_within_capacity(
            (capacity, refill, steps) in (0.1..1000.0f64)
                .prop_flat_map(|capacity| (Just(capacity), 0.0..100.0f64, steps(capacity))),
        ) {
            let mut bucket = TokenBucket::new(capacity, refill).unwrap();
            let mut now = 0.0;
            for step in steps {
                match step {
                    Step::Take { dt, amount } => {
                        now += dt;
                        let _ = bucket.try_take(amount, now);
                    }
                    Step::GiveBack { dt, amount } => {
                        now += dt;
                        bucket.give_back(amount, now).unwrap();
                    }
                }
                let level = bucket.available(now).unwrap();
                prop_assert!((0.0..=capacity).contains(&level), "level {level} of {capacity}");
            }
        }
    }
}
