//! One lock for the whole table, held by a process id in a word of the mapping.
//!
//! Every decision takes it for a few hundred nanoseconds, so a request's buckets and
//! budgets change together for every process. A holder that dies (killed, crashed) never
//! releases it: a waiter that finds the holder's process gone takes the lock over.

use std::sync::atomic::{AtomicU64, Ordering};

/// Waits between checks that the holder still lives.
const SPINS_BETWEEN_CHECKS: u32 = 2_000;

/// Holds the lock until dropped.
pub(super) struct Held<'a> {
    word: &'a AtomicU64,
    me: u64,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // Only if still ours: a waiter may have judged us dead (a pid reused) and taken it.
        let _ = self
            .word
            .compare_exchange(self.me, 0, Ordering::Release, Ordering::Relaxed);
    }
}

/// Takes the lock in `word` for this process.
pub(super) fn hold(word: &AtomicU64) -> Held<'_> {
    hold_as(word, u64::from(std::process::id()))
}

fn hold_as(word: &AtomicU64, me: u64) -> Held<'_> {
    let mut spins: u32 = 0;
    loop {
        match word.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => return Held { word, me },
            Err(0) => continue, // a spurious failure
            Err(holder) => {
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(SPINS_BETWEEN_CHECKS)
                    && holder != me
                    && !alive(holder)
                    && word
                        .compare_exchange(holder, me, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                {
                    return Held { word, me };
                }
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
    }
}

/// Whether process `pid` exists on this host (a process we may not signal exists too).
fn alive(pid: u64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 sends nothing; it only checks that `pid` can be addressed.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::sync::Arc;

    fn dead_pid() -> u64 {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap(); // reaped: the pid names no process now
        u64::from(pid)
    }

    #[test]
    fn a_lock_left_by_a_dead_process_is_taken_over() {
        let word = AtomicU64::new(dead_pid());
        {
            let _held = hold(&word);
            assert_eq!(word.load(Ordering::Relaxed), u64::from(std::process::id()));
        }
        assert_eq!(word.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_live_holder_is_waited_for() {
        let word = Arc::new(AtomicU64::new(0));
        let held = hold_as(&word, 1); // pid 1 (init) lives: never taken over
        let waiter = {
            let word = Arc::clone(&word);
            std::thread::spawn(move || {
                let _held = hold(&word);
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished());
        drop(held);
        waiter.join().unwrap();
        assert_eq!(word.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn threads_never_hold_it_together() {
        let word = Arc::new(AtomicU64::new(0));
        let inside = Arc::new(AtomicU64::new(0));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (word, inside) = (Arc::clone(&word), Arc::clone(&inside));
                std::thread::spawn(move || {
                    for _ in 0..2_000 {
                        let _held = hold(&word);
                        assert_eq!(inside.fetch_add(1, Ordering::Relaxed), 0);
                        inside.fetch_sub(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
    }

    #[test]
    fn liveness_of_processes() {
        assert!(alive(u64::from(std::process::id())));
        assert!(alive(1));
        assert!(!alive(dead_pid()));
        assert!(!alive(u64::MAX));
    }
}
