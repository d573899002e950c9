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
}
