use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;

static FILES: AtomicUsize = AtomicUsize::new(0);

/// A path no other test uses, removed when dropped.
struct TempTable(String);

impl TempTable {
    fn new() -> Self {
        let n = FILES.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("modelyard-limits-{}-{n}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Self(path.to_string_lossy().into_owned())
    }

    fn open(&self, slots: u64) -> SharedLimits {
        SharedLimits::open(&self.0, slots, slots).unwrap()
    }
}

impl Drop for TempTable {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn demand(key: &str, amount: f64) -> BucketDemand<'_> {
    BucketDemand {
        key,
        amount,
        capacity: 10.0,
        refill_per_sec: 2.0,
    }
}

fn charge(key: &str, nano: i64) -> SpendCharge<'_> {
    SpendCharge {
        key,
        nano,
        budget_nano: 100,
        begins_at: 1_000.0,
        resets_at: 2_000.0,
    }
}

#[test]
fn two_mappings_of_one_file_share_a_bucket() {
    let file = TempTable::new();
    let (a, b) = (file.open(64), file.open(64));
    assert_eq!(a.take(&[demand("k", 6.0)], 0.0, true), Ok(vec![0.0]));
    assert_eq!(b.take(&[demand("k", 4.0)], 0.0, true), Ok(vec![0.0]));
    assert_eq!(a.take(&[demand("k", 3.0)], 0.0, true), Ok(vec![1.5]));
    assert_eq!(b.take(&[demand("k", 3.0)], 1.5, true), Ok(vec![0.0]));
    assert_eq!(a.available(&demand("k", 0.0), 1.5), Ok(0.0));
    assert_eq!(a.available(&demand("never", 0.0), 1.5), Ok(10.0));
}

#[test]
fn a_request_takes_every_bucket_or_none() {
    let file = TempTable::new();
    let table = file.open(64);
    table.take(&[demand("b", 9.0)], 0.0, true).unwrap();
    let waits = table.take(&[demand("a", 5.0), demand("b", 5.0)], 0.0, true);
    assert_eq!(waits, Ok(vec![0.0, 2.0]));
    assert_eq!(table.available(&demand("a", 0.0), 0.0), Ok(10.0)); // given back
                                                                   // The same bucket twice, the second refused: restored exactly.
    let twice = table.take(&[demand("a", 6.0), demand("a", 6.0)], 0.0, true);
    assert_eq!(twice, Ok(vec![0.0, 1.0]));
    assert_eq!(table.available(&demand("a", 0.0), 0.0), Ok(10.0));
    // Judged only: nothing taken.
    assert_eq!(table.take(&[demand("a", 4.0)], 0.0, false), Ok(vec![0.0]));
    assert_eq!(table.available(&demand("a", 0.0), 0.0), Ok(10.0));
}

#[test]
fn changed_limits_start_full_and_give_back_keeps_to_the_same_ones() {
    let file = TempTable::new();
    let table = file.open(64);
    table.take(&[demand("k", 10.0)], 0.0, true).unwrap();
    let wider = BucketDemand {
        capacity: 20.0,
        ..demand("k", 0.0)
    };
    assert_eq!(table.available(&wider, 0.0), Ok(20.0));
    table.give_back(&[wider], 0.0).unwrap(); // other parameters: not this bucket
    assert_eq!(table.available(&demand("k", 0.0), 0.0), Ok(0.0));
    table.give_back(&[demand("k", 4.0)], 0.0).unwrap();
    assert_eq!(table.available(&demand("k", 0.0), 0.0), Ok(4.0));
    table.give_back(&[demand("k", 40.0)], 0.0).unwrap();
    assert_eq!(table.available(&demand("k", 0.0), 0.0), Ok(10.0)); // never past capacity
    table.give_back(&[demand("unknown", 4.0)], 0.0).unwrap(); // creates nothing
}

#[test]
fn bad_parameters_and_amounts_are_named() {
    let file = TempTable::new();
    let table = file.open(64);
    let zero = BucketDemand {
        capacity: 0.0,
        ..demand("k", 1.0)
    };
    let err = table.take(&[zero], 0.0, true).unwrap_err();
    assert_eq!(
        err.to_string(),
        "capacity must be a finite number > 0, got 0"
    );
    let err = table.take(&[demand("k", 11.0)], 0.0, true).unwrap_err();
    assert_eq!(
        err.to_string(),
        "amount 11 exceeds the bucket capacity of 10"
    );
    let err = table.take(&[demand("k", 1.0)], f64::NAN, true).unwrap_err();
    assert_eq!(err.to_string(), "time must be a finite number, got NaN");
}

#[test]
fn a_reservation_is_all_or_nothing_across_buckets_and_budgets() {
    let file = TempTable::new();
    let table = file.open(64);
    let first = table.reserve(&[demand("k", 2.0)], &[charge("day", 60)], 0.0);
    assert_eq!(
        first,
        Ok(Reservation {
            waits: vec![0.0],
            spent_before: vec![0],
            spent_after: vec![60],
            admitted: true,
        })
    );
    // Over the budget: refused, and the bucket keeps its tokens.
    let over = table
        .reserve(&[demand("k", 2.0)], &[charge("day", 41)], 0.0)
        .unwrap();
    assert!(!over.admitted);
    assert_eq!(
        (over.waits, over.spent_before, over.spent_after),
        (vec![0.0], vec![60], vec![60])
    );
    assert_eq!(table.available(&demand("k", 0.0), 0.0), Ok(8.0));
    // A bucket refuses: no charge is added.
    let short = table
        .reserve(&[demand("k", 9.0)], &[charge("day", 10)], 0.0)
        .unwrap();
    assert!(!short.admitted);
    assert_eq!(short.waits, vec![0.5]);
    assert_eq!(table.spent("day"), 60);
    // Exactly the budget is within it.
    assert!(
        table
            .reserve(&[], &[charge("day", 40)], 0.0)
            .unwrap()
            .admitted
    );
    assert_eq!(table.spent("day"), 100);
}

#[test]
fn counters_add_refund_and_tell_each_fraction_once() {
    let file = TempTable::new();
    let table = file.open(64);
    assert_eq!(table.add(&[charge("gone", -5)]), Ok(vec![0])); // no window kept: dropped
    assert_eq!(table.spent("gone"), 0);
    assert_eq!(table.mark_told("gone", 2), 0); // nothing to mark
    assert_eq!(
        table.add(&[charge("w", 30), charge("w", -50)]),
        Ok(vec![30, 0])
    );
    assert_eq!(table.add(&[charge("w", 70)]), Ok(vec![70]));
    assert_eq!(table.mark_told("w", 1), 0);
    assert_eq!(table.mark_told("w", 1), 1);
    assert_eq!(table.mark_told("w", 3), 1);
    assert_eq!(table.mark_told("w", 2), 3); // never goes back
}

#[test]
fn a_full_table_says_so_and_reuses_what_has_no_more_use() {
    let file = TempTable::new();
    let table = file.open(2);
    table
        .take(&[demand("a", 5.0), demand("b", 5.0)], 0.0, true)
        .unwrap();
    let err = table.take(&[demand("c", 1.0)], 0.0, true).unwrap_err();
    assert_eq!(
        err,
        SharedLimitsError::Full {
            kind: "bucket",
            slots: 2
        }
    );
    // At 2.5 s both are full again: "c" takes one of their slots.
    assert_eq!(table.take(&[demand("c", 1.0)], 2.5, true), Ok(vec![0.0]));
    assert_eq!(table.available(&demand("c", 0.0), 2.5), Ok(9.0));

    table.add(&[charge("d1", 10), charge("d2", 10)]).unwrap();
    let next_window = SpendCharge {
        begins_at: 2_000.0,
        resets_at: 3_000.0,
        ..charge("d3", 10)
    };
    let err = table.add(&[charge("d3", 10)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the shared limits table is full: all 2 counter slots are in use"
    );
    assert_eq!(table.add(&[next_window]), Ok(vec![10])); // a window that ended is reused
    assert_eq!(table.spent("d3"), 10);
}

#[test]
fn files_of_another_layout_are_refused_by_name() {
    let file = TempTable::new();
    drop(file.open(4));
    let err = SharedLimits::open(&file.0, 4, 8).err().unwrap();
    assert!(matches!(err, SharedLimitsError::Layout { .. }), "{err}");
    assert!(err.to_string().contains("another slot count"), "{err}");
    // The right size, but not a table.
    std::fs::write(&file.0, vec![7u8; 64 + 16 * 64]).unwrap();
    let err = SharedLimits::open(&file.0, 8, 8).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "shared limits file {}: not a modelyard limits table",
            file.0
        )
    );
    let err = SharedLimits::open(&file.0, 0, 8).err().unwrap();
    assert_eq!(
        err.to_string(),
        "bucket slots must be between 1 and 16777216, got 0"
    );
    let err = SharedLimits::open("/nonexistent-dir/limits", 8, 8)
        .err()
        .unwrap();
    assert!(matches!(err, SharedLimitsError::File { .. }), "{err}");
}

#[test]
fn threads_each_with_their_own_mapping_never_take_more_than_the_bucket_holds() {
    let file = Arc::new(TempTable::new());
    drop(file.open(64));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let file = Arc::clone(&file);
            std::thread::spawn(move || {
                let table = file.open(64); // a mapping of its own, as a process has
                let still = BucketDemand {
                    refill_per_sec: 0.0,
                    capacity: 1000.0,
                    ..demand("shared", 1.0)
                };
                (0..500)
                    .filter(|_| table.take(&[still], 0.0, true).unwrap()[0] == 0.0)
                    .count()
            })
        })
        .collect();
    let admitted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(admitted, 1000);
}

#[test]
fn keys_hash_apart_and_never_to_empty() {
    assert_ne!(key_hash("a"), key_hash("b"));
    assert_ne!(key_hash(""), 0);
    assert_eq!(key_hash("model:x"), key_hash("model:x"));
}
