//! Token buckets and spend counters in a file every process on a host maps: several
//! gateway processes (`modelyard up --workers`, or `serve` replicas on one port) share
//! their rate limits and budgets without Redis.
//!
//! One lock word guards the table (`lock`), so a request's buckets and budgets are
//! judged and changed together for every process, as the in-process store does within
//! its event loop; a holder that dies is taken over. Buckets run `TokenBucket`'s own
//! rules on state kept in their slot; `now` is the host's monotonic clock
//! (`clock::host_monotonic_seconds`, Python's `time.monotonic`), the same in every process.
//!
//! Slots are found by open addressing on a 64-bit FNV-1a hash of the key and are never
//! emptied, so a probe never stops short of a key placed further on. A slot whose bucket
//! is full again (as a new one would be), or whose spend window ended before the window
//! being claimed began, is given to the next new key.

mod error;
mod lock;
mod region;

use std::sync::atomic::Ordering::Relaxed;

pub use error::SharedLimitsError;
use region::{Region, LOCK_WORD};

use crate::token_bucket::{Admission, TokenBucket};

/// What a request takes from one bucket.
#[derive(Debug, Clone, Copy)]
pub struct BucketDemand<'a> {
    pub key: &'a str,
    pub amount: f64,
    pub capacity: f64,
    pub refill_per_sec: f64,
}

/// What a request adds to one budget window's counter (nano-dollars; negative: a refund).
#[derive(Debug, Clone, Copy)]
pub struct SpendCharge<'a> {
    pub key: &'a str,
    pub nano: i64,
    pub budget_nano: i64,
    /// Unix seconds the charge's window began: counters that reset by then are reused.
    pub begins_at: f64,
    pub resets_at: f64,
}

/// The answer to `reserve`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    /// Per demand: 0 when it could be taken, else the seconds until it could.
    pub waits: Vec<f64>,
    /// Per charge: the counter before this request.
    pub spent_before: Vec<i64>,
    /// Per charge: the counter after it (as before when refused).
    pub spent_after: Vec<i64>,
    /// Every demand taken and every charge added; otherwise nothing changed.
    pub admitted: bool,
}

// Bucket slot words.
const KEY: usize = 0;
const CAPACITY: usize = 1;
const REFILL: usize = 2;
const LEVEL: usize = 3;
const LAST: usize = 4;
// Counter slot words.
const SPENT: usize = 1;
const TOLD: usize = 2;
const RESETS_AT: usize = 3;

/// The table in one mapped file.
pub struct SharedLimits {
    region: Region,
}

impl SharedLimits {
    /// Maps `path`, creating an empty table there when the file is missing or empty.
    pub fn open(
        path: &str,
        bucket_slots: u64,
        counter_slots: u64,
    ) -> Result<Self, SharedLimitsError> {
        Ok(Self {
            region: Region::open(path, bucket_slots, counter_slots)?,
        })
    }

    /// Takes every demand, or none: the wait of each demand (0: it could be taken).
    /// `keep = false` judges without taking anything.
    pub fn take(
        &self,
        demands: &[BucketDemand<'_>],
        now: f64,
        keep: bool,
    ) -> Result<Vec<f64>, SharedLimitsError> {
        check(demands)?;
        let _held = lock::hold(self.region.word(LOCK_WORD));
        self.take_held(demands, now, keep)
    }

    /// Returns unused amounts to buckets still built with the same parameters.
    pub fn give_back(
        &self,
        demands: &[BucketDemand<'_>],
        now: f64,
    ) -> Result<(), SharedLimitsError> {
        check(demands)?;
        let _held = lock::hold(self.region.word(LOCK_WORD));
        for demand in demands {
            if let Some(slot) = self.find_bucket(demand, now, false)? {
                if !self.same_limits(slot, demand) {
                    continue; // rebuilt since with other limits: not the bucket taken from
                }
                let mut bucket = self.load_bucket(slot, demand)?;
                bucket.give_back(demand.amount, now)?;
                self.store_bucket(slot, &bucket);
            }
        }
        Ok(())
    }

    /// What the bucket holds at `now` (full before its first use).
    pub fn available(&self, demand: &BucketDemand<'_>, now: f64) -> Result<f64, SharedLimitsError> {
        check(std::slice::from_ref(demand))?;
        let _held = lock::hold(self.region.word(LOCK_WORD));
        match self.find_bucket(demand, now, false)? {
            Some(slot) => Ok(self.load_bucket(slot, demand)?.available(now)?),
            None => Ok(demand.capacity),
        }
    }

    /// `take` every demand and add every charge, all or nothing: refused when a demand
    /// must wait or a charge would take its counter past the budget.
    pub fn reserve(
        &self,
        demands: &[BucketDemand<'_>],
        charges: &[SpendCharge<'_>],
        now: f64,
    ) -> Result<Reservation, SharedLimitsError> {
        check(demands)?;
        let _held = lock::hold(self.region.word(LOCK_WORD));
        let spent_before: Vec<i64> = charges.iter().map(|c| self.spent_held(c.key)).collect();
        let overspent = charges
            .iter()
            .zip(&spent_before)
            .any(|(c, spent)| spent.saturating_add(c.nano) > c.budget_nano);
        let waits = self.take_held(demands, now, !overspent)?;
        let admitted = !overspent && waits.iter().all(|w| *w == 0.0);
        let spent_after = if admitted {
            charges
                .iter()
                .map(|c| self.add_held(c))
                .collect::<Result<_, _>>()?
        } else {
            spent_before.clone()
        };
        Ok(Reservation {
            waits,
            spent_before,
            spent_after,
            admitted,
        })
    }

    /// Adds each charge to its counter (never below 0; a refund to a window no longer kept
    /// is dropped): each counter after it.
    pub fn add(&self, charges: &[SpendCharge<'_>]) -> Result<Vec<i64>, SharedLimitsError> {
        let _held = lock::hold(self.region.word(LOCK_WORD));
        charges.iter().map(|c| self.add_held(c)).collect()
    }

    /// Nano-dollars a budget window's counter holds; 0 before its first charge.
    pub fn spent(&self, key: &str) -> i64 {
        let _held = lock::hold(self.region.word(LOCK_WORD));
        self.spent_held(key)
    }

    /// Records that alert fractions up to `reached` were told for `key`'s window: the
    /// count told before (so each fraction is told once across every process).
    pub fn mark_told(&self, key: &str, reached: u64) -> u64 {
        let _held = lock::hold(self.region.word(LOCK_WORD));
        match self.find_counter(key, None) {
            Ok(Some(slot)) => self.region.counter(slot, TOLD).fetch_max(reached, Relaxed),
            _ => 0,
        }
    }

    fn take_held(
        &self,
        demands: &[BucketDemand<'_>],
        now: f64,
        keep: bool,
    ) -> Result<Vec<f64>, SharedLimitsError> {
        let mut waits = Vec::with_capacity(demands.len());
        let mut taken = Vec::with_capacity(demands.len());
        for demand in demands {
            let slot = self
                .find_bucket(demand, now, true)?
                .ok_or(SharedLimitsError::Full {
                    kind: "bucket",
                    slots: self.region.bucket_slots as u64,
                })?;
            let mut bucket = self.load_bucket(slot, demand)?;
            let before = bucket.clone();
            match bucket.try_take(demand.amount, now)? {
                Admission::Admitted => {
                    self.store_bucket(slot, &bucket);
                    taken.push((slot, before));
                    waits.push(0.0);
                }
                Admission::Wait(wait) => waits.push(wait),
            }
        }
        if !keep || waits.iter().any(|w| *w > 0.0) {
            for (slot, before) in taken.into_iter().rev() {
                self.store_bucket(slot, &before); // exactly as it was, the last taken first
            }
        }
        Ok(waits)
    }

    fn load_bucket(
        &self,
        slot: usize,
        demand: &BucketDemand<'_>,
    ) -> Result<TokenBucket, SharedLimitsError> {
        let word = |field| self.region.bucket(slot, field).load(Relaxed);
        if !self.same_limits(slot, demand) {
            // New or changed limits start with a full bucket, as in one process.
            return Ok(TokenBucket::new(demand.capacity, demand.refill_per_sec)?);
        }
        let last = f64::from_bits(word(LAST));
        Ok(TokenBucket::resume(
            demand.capacity,
            demand.refill_per_sec,
            f64::from_bits(word(LEVEL)),
            (!last.is_nan()).then_some(last),
        )?)
    }

    /// Whether slot `slot`'s bucket was built with `demand`'s capacity and refill.
    fn same_limits(&self, slot: usize, demand: &BucketDemand<'_>) -> bool {
        let word = |field| f64::from_bits(self.region.bucket(slot, field).load(Relaxed));
        word(CAPACITY) == demand.capacity && word(REFILL) == demand.refill_per_sec
    }

    fn store_bucket(&self, slot: usize, bucket: &TokenBucket) {
        let (level, last) = bucket.state();
        let put = |field, value: f64| {
            self.region
                .bucket(slot, field)
                .store(value.to_bits(), Relaxed)
        };
        put(CAPACITY, bucket.capacity());
        put(REFILL, bucket.refill_per_sec());
        put(LEVEL, level);
        put(LAST, last.unwrap_or(f64::NAN));
    }

    /// The slot holding `demand`'s bucket; with `claim`, a new or reused one when none does.
    fn find_bucket(
        &self,
        demand: &BucketDemand<'_>,
        now: f64,
        claim: bool,
    ) -> Result<Option<usize>, SharedLimitsError> {
        let key = key_hash(demand.key);
        let reusable = match probe(
            self.region.bucket_slots,
            key,
            |slot| self.region.bucket(slot, KEY).load(Relaxed),
            |slot| claim && self.refilled(slot, now),
        ) {
            Probe::Found(slot) => return Ok(Some(slot)),
            Probe::Free(slot) => slot,
        };
        match reusable {
            Some(slot) if claim => {
                let put = |field, value: u64| self.region.bucket(slot, field).store(value, Relaxed);
                put(KEY, key);
                put(CAPACITY, f64::NAN.to_bits()); // no parameters: `load_bucket` starts full
                put(REFILL, f64::NAN.to_bits());
                Ok(Some(slot))
            }
            _ => Ok(None),
        }
    }

    /// Whether slot `slot`'s bucket is full at `now`: a new bucket would be the same.
    fn refilled(&self, slot: usize, now: f64) -> bool {
        let word = |field| f64::from_bits(self.region.bucket(slot, field).load(Relaxed));
        match TokenBucket::resume(word(CAPACITY), word(REFILL), word(LEVEL), {
            let last = word(LAST);
            (!last.is_nan()).then_some(last)
        }) {
            Ok(mut bucket) => bucket
                .available(now)
                .is_ok_and(|level| level >= bucket.capacity()),
            Err(_) => true, // never given parameters
        }
    }

    fn spent_held(&self, key: &str) -> i64 {
        match self.find_counter(key, None) {
            Ok(Some(slot)) => self.region.counter(slot, SPENT).load(Relaxed) as i64,
            _ => 0,
        }
    }

    fn add_held(&self, charge: &SpendCharge<'_>) -> Result<i64, SharedLimitsError> {
        let claim = (charge.nano > 0).then_some(charge);
        let Some(slot) = self.find_counter(charge.key, claim)? else {
            return Ok(0); // a refund to a window no longer kept
        };
        let spent = self.region.counter(slot, SPENT);
        let after = (spent.load(Relaxed) as i64)
            .saturating_add(charge.nano)
            .max(0);
        spent.store(after as u64, Relaxed);
        Ok(after)
    }

    /// The slot holding `key`'s counter; with `claim`, a new or reused one when none does.
    fn find_counter(
        &self,
        key: &str,
        claim: Option<&SpendCharge<'_>>,
    ) -> Result<Option<usize>, SharedLimitsError> {
        let hash = key_hash(key);
        let slots = self.region.counter_slots;
        let reusable = match probe(
            slots,
            hash,
            |slot| self.region.counter(slot, KEY).load(Relaxed),
            |slot| {
                let resets_at = f64::from_bits(self.region.counter(slot, RESETS_AT).load(Relaxed));
                claim.is_some_and(|c| resets_at <= c.begins_at)
            },
        ) {
            Probe::Found(slot) => return Ok(Some(slot)),
            Probe::Free(slot) => slot,
        };
        let Some(charge) = claim else {
            return Ok(None);
        };
        let slot = reusable.ok_or(SharedLimitsError::Full {
            kind: "counter",
            slots: slots as u64,
        })?;
        let put = |field, value: u64| self.region.counter(slot, field).store(value, Relaxed);
        put(KEY, hash);
        put(SPENT, 0);
        put(TOLD, 0);
        put(RESETS_AT, charge.resets_at.to_bits());
        Ok(Some(slot))
    }
}

/// Where a probe for a key ended.
enum Probe {
    Found(usize),
    /// Not there: the first slot found reusable on the way, else the empty one that ended
    /// the probe (None: the table is full of live entries).
    Free(Option<usize>),
}

/// Open addressing from `hash`: `key_at(slot)` is the slot's key, `reusable(slot)` whether
/// a live slot may be given to a new key (asked only until one is found).
fn probe(
    slots: usize,
    hash: u64,
    key_at: impl Fn(usize) -> u64,
    reusable_at: impl Fn(usize) -> bool,
) -> Probe {
    let mut reusable = None;
    for i in 0..slots {
        let slot = (hash as usize).wrapping_add(i) % slots;
        let held = key_at(slot);
        if held == hash {
            return Probe::Found(slot);
        }
        if held == 0 {
            return Probe::Free(reusable.or(Some(slot)));
        }
        if reusable.is_none() && reusable_at(slot) {
            reusable = Some(slot);
        }
    }
    Probe::Free(reusable)
}

/// Amounts checked before the lock is taken (a bucket's own checks run under it).
fn check(demands: &[BucketDemand<'_>]) -> Result<(), SharedLimitsError> {
    for demand in demands {
        TokenBucket::new(demand.capacity, demand.refill_per_sec)?;
    }
    Ok(())
}

/// FNV-1a, 64 bits: the same in every process and version; 0 is kept for "empty".
fn key_hash(key: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash.max(1)
}

#[cfg(test)]
mod tests;
