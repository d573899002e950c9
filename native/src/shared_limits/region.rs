//! The mapped file: a header, then bucket slots, then counter slots, each slot
//! `SLOT_WORDS` 64-bit words. A new file is all zeros, which reads as an empty table.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::error::SharedLimitsError;

/// "MYLIMIT" and the layout version.
const MAGIC: u64 = 0x4d59_4c49_4d49_5401;
/// Claimed by the process writing a new header.
const WRITING: u64 = 0x4d59_4c49_4d49_5400;
pub(super) const SLOT_WORDS: usize = 8;
pub(crate) const MAX_SLOTS: u64 = 1 << 24;
const HEADER_WORDS: usize = 8;
/// Header words: the magic, the bucket and counter slot counts, the lock.
const SLOTS_WORD: usize = 1;
const COUNTERS_WORD: usize = 2;
pub(super) const LOCK_WORD: usize = 3;

/// A shared, writable mapping of the whole file, unmapped when dropped.
pub(super) struct Region {
    base: *mut AtomicU64,
    words: usize,
    pub(super) bucket_slots: usize,
    pub(super) counter_slots: usize,
}

// SAFETY: the mapping is only reached through `&AtomicU64`, which may be shared.
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

impl Region {
    /// Opens `path` (created when missing) as a table of that many slots of each kind.
    pub(super) fn open(
        path: &str,
        bucket_slots: u64,
        counter_slots: u64,
    ) -> Result<Self, SharedLimitsError> {
        for (kind, value) in [("bucket", bucket_slots), ("counter", counter_slots)] {
            if value == 0 || value > MAX_SLOTS {
                return Err(SharedLimitsError::InvalidSlots { kind, value });
            }
        }
        let words = HEADER_WORDS + (bucket_slots + counter_slots) as usize * SLOT_WORDS;
        let bytes = (words * 8) as u64;
        let file_error = |cause: std::io::Error| SharedLimitsError::File {
            path: path.to_owned(),
            cause: cause.to_string(),
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(file_error)?;
        let size = file.metadata().map_err(file_error)?.len();
        if size == 0 {
            file.set_len(bytes).map_err(file_error)?; // zeros: an empty table
        } else if size != bytes {
            return Err(SharedLimitsError::Layout {
                path: path.to_owned(),
                problem: format!(
                    "it is {size} bytes, and a table of {bucket_slots} bucket and \
                     {counter_slots} counter slots is {bytes}: another slot count or not a \
                     modelyard limits table (remove it while no gateway uses it)"
                ),
            });
        }
        // SAFETY: a fresh shared mapping of the whole file; checked for MAP_FAILED.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(file_error(std::io::Error::last_os_error()));
        }
        let region = Self {
            base: base.cast(),
            words,
            bucket_slots: bucket_slots as usize,
            counter_slots: counter_slots as usize,
        };
        region.check_header(path, bucket_slots, counter_slots)?;
        Ok(region)
    }

    /// Writes the header of a new table, or checks an existing one's.
    fn check_header(
        &self,
        path: &str,
        bucket_slots: u64,
        counter_slots: u64,
    ) -> Result<(), SharedLimitsError> {
        let magic = self.word(0);
        if magic
            .compare_exchange(0, WRITING, Ordering::Acquire, Ordering::Acquire)
            .is_ok()
        {
            self.word(SLOTS_WORD).store(bucket_slots, Ordering::Relaxed);
            self.word(COUNTERS_WORD)
                .store(counter_slots, Ordering::Relaxed);
            magic.store(MAGIC, Ordering::Release);
        }
        let layout = |problem: String| SharedLimitsError::Layout {
            path: path.to_owned(),
            problem,
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match magic.load(Ordering::Acquire) {
                MAGIC => break,
                WRITING if Instant::now() < deadline => std::thread::yield_now(),
                WRITING => {
                    return Err(layout(
                        "its header was left half written (remove it while no gateway uses it)"
                            .into(),
                    ))
                }
                _ => return Err(layout("not a modelyard limits table".into())),
            }
        }
        let found = (
            self.word(SLOTS_WORD).load(Ordering::Relaxed),
            self.word(COUNTERS_WORD).load(Ordering::Relaxed),
        );
        if found != (bucket_slots, counter_slots) {
            return Err(layout(format!(
                "it holds {} bucket and {} counter slots, not {bucket_slots} and {counter_slots}",
                found.0, found.1
            )));
        }
        Ok(())
    }

    /// Word `index` of the file.
    pub(super) fn word(&self, index: usize) -> &AtomicU64 {
        assert!(index < self.words);
        // SAFETY: in bounds (checked), mapped for our lifetime, 8-aligned (page-aligned base).
        unsafe { &*self.base.add(index) }
    }

    /// Word `field` of bucket slot `slot`.
    pub(super) fn bucket(&self, slot: usize, field: usize) -> &AtomicU64 {
        self.word(HEADER_WORDS + slot * SLOT_WORDS + field)
    }

    /// Word `field` of counter slot `slot`.
    pub(super) fn counter(&self, slot: usize, field: usize) -> &AtomicU64 {
        self.word(HEADER_WORDS + (self.bucket_slots + slot) * SLOT_WORDS + field)
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping `open` made, of this length, unmapped once.
        unsafe { libc::munmap(self.base.cast(), self.words * 8) };
    }
}
