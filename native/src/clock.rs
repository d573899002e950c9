//! The process-wide monotonic clock used when a Python caller passes no `now`.

use std::sync::OnceLock;
use std::time::Instant;

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Seconds since the first reading in this process. Monotonic, so wall-clock
/// jumps (NTP, DST) cannot refill or drain a bucket.
pub fn monotonic_seconds() -> f64 {
    ORIGIN.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// Seconds on the host's monotonic clock (`CLOCK_MONOTONIC`, Python's `time.monotonic`):
/// one reading for every process on the host, so limits kept in shared memory agree.
pub fn host_monotonic_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_clock_moves_and_is_the_boot_clock() {
        let first = host_monotonic_seconds();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let second = host_monotonic_seconds();
        assert!(second - first >= 0.019 && second - first < 5.0);
        let uptime: f64 = std::fs::read_to_string("/proc/uptime")
            .map(|s| {
                s.split_whitespace()
                    .next()
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0.0)
            })
            .unwrap_or(second);
        // CLOCK_MONOTONIC counts from boot, as /proc/uptime does (less any suspend).
        assert!(second <= uptime + 1.0);
    }

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
