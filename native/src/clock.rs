//! The process-wide monotonic clock used when a Python caller passes no `now`.

use std::sync::OnceLock;
use std::time::Instant;

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Seconds since the first reading in this process. Monotonic, so wall-clock
/// jumps (NTP, DST) cannot refill or drain a bucket.
pub fn monotonic_seconds() -> f64 {
    ORIGIN.get_or_init(Instant::now).elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_goes_backwards() {
        let first = monotonic_seconds();
        let second = monotonic_seconds();
        assert!(first >= 0.0 && second >= first);
    }

    /// Kills `monotonic_seconds` → a constant: the clock moves with real time.
    #[test]
    fn advances_with_real_time() {
        let first = monotonic_seconds();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let elapsed = monotonic_seconds() - first;
        assert!((0.02..10.0).contains(&elapsed), "{elapsed}");
    }
}
