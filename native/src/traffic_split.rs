//! Sticky A/B assignment: the same key lands in the same arm in every process,
//! on every machine and in every release, in proportion to the arms' weights.
//!
//! The key is hashed with FNV-1a 64 (fixed, specified, no per-process seed, unlike
//! std's `RandomState`), then mixed with the SplitMix64 finaliser because FNV's
//! low bits are weak for short, similar keys ("user-1", "user-2"). The top 53 bits
//! give a point in [0, 1) that falls into one arm's share of the cumulative
//! weights. Changing the weights moves only the keys whose point crosses a
//! boundary; changing this function would reshuffle every experiment, so the
//! tests pin its output.

mod error;

pub use error::SplitError;

use crate::rng::mix64;

/// FNV-1a, 64-bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// The key's fixed point in [0, 1).
pub fn key_point(key: &str) -> f64 {
    (mix64(fnv1a64(key.as_bytes())) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// The arm `key` belongs to: arm `i` takes a `weights[i] / sum` share of keys.
/// Weights must be finite and >= 0, not all zero; a zero-weight arm gets no key.
pub fn assign_arm(key: &str, weights: &[f64]) -> Result<usize, SplitError> {
    if weights.is_empty() {
        return Err(SplitError::NoArms);
    }
    let mut largest: f64 = 0.0;
    for (index, &value) in weights.iter().enumerate() {
        if !(value.is_finite() && value >= 0.0) {
            return Err(SplitError::InvalidWeight { index, value });
        }
        largest = largest.max(value);
    }
    if largest == 0.0 {
        return Err(SplitError::AllZero);
    }
    Ok(arm_at(key_point(key), weights, largest))
}

/// The arm whose share of [0, 1) holds `point`: each arm owns a half-open
/// interval, so a point on a boundary belongs to the arm above it. `weights`
/// are checked, `largest` is their maximum (> 0).
fn arm_at(point: f64, weights: &[f64], largest: f64) -> usize {
    // Work in units of the largest weight so weights near f64::MAX cannot sum to inf.
    let total: f64 = weights.iter().map(|w| w / largest).sum();
    let target = point * total;
    let mut cumulative = 0.0;
    let mut last_positive = 0;
    for (i, &w) in weights.iter().enumerate() {
        if w == 0.0 {
            continue;
        }
        last_positive = i;
        cumulative += w / largest;
        if target < cumulative {
            return i;
        }
    }
    // Rounding can leave `target` a hair above the running sum: the last arm that
    // has any weight owns the top of the range.
    last_positive
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn assignments_are_pinned_across_releases() {
        // Changing these reassigns every running experiment's users.
        let arms: Vec<usize> = ["user-1", "user-2", "user-3", "user-4", "", "ключ"]
            .iter()
            .map(|k| assign_arm(k, &[1.0, 1.0, 1.0]).unwrap())
            .collect();
        assert_eq!(arms, PINNED);
    }

    const PINNED: [usize; 6] = [2, 0, 1, 0, 2, 1];

    /// Kills `target < cumulative` → `<=`: arm 0 owns [0, 0.5) and arm 1 owns
    /// [0.5, 1), so the boundary point goes up (no key can be searched for that
    /// hashes exactly onto a boundary, hence the point is given directly).
    #[test]
    fn a_point_on_a_boundary_belongs_to_the_arm_above() {
        let weights = [1.0, 1.0];
        assert_eq!(arm_at(0.5f64.next_down(), &weights, 1.0), 0);
        assert_eq!(arm_at(0.5, &weights, 1.0), 1);
        assert_eq!(arm_at(0.0, &[0.0, 3.0], 3.0), 1);
        assert_eq!(arm_at(1.0f64.next_down(), &[2.0, 0.0], 2.0), 0);
    }

    #[test]
    fn zero_weight_arms_get_nothing_and_bad_weights_are_rejected() {
        for i in 0..1000 {
            let key = format!("k{i}");
            assert_eq!(assign_arm(&key, &[0.0, 2.0, 0.0]), Ok(1));
        }
        assert_eq!(assign_arm("k", &[]), Err(SplitError::NoArms));
        assert_eq!(assign_arm("k", &[0.0, 0.0]), Err(SplitError::AllZero));
        assert_eq!(
            assign_arm("k", &[1.0, -0.5]).unwrap_err().to_string(),
            "weights[1] must be a finite number >= 0, got -0.5"
        );
        assert!(assign_arm("k", &[f64::NAN]).is_err());
        assert!(assign_arm("k", &[1.0, f64::INFINITY]).is_err());
        assert!(assign_arm("k", &[f64::MAX, f64::MAX]).is_ok());
    }

    /// 100k keys over weights 1:2:7 land within 1% (absolute) of each share, and
    /// a chi-square statistic (2 degrees of freedom) stays below its 0.1% critical
    /// value of 13.8.
    #[test]
    fn shares_follow_the_weights() {
        let weights = [1.0, 2.0, 7.0];
        let n = 100_000;
        let mut counts = [0usize; 3];
        for i in 0..n {
            counts[assign_arm(&format!("user-{i}"), &weights).unwrap()] += 1;
        }
        let mut chi_square = 0.0;
        for (count, w) in counts.iter().zip(weights) {
            let expected = n as f64 * w / 10.0;
            let share = *count as f64 / n as f64;
            assert!((share - w / 10.0).abs() < 0.01, "{counts:?}");
            chi_square += (*count as f64 - expected).powi(2) / expected;
        }
        assert!(chi_square < 13.8, "chi-square {chi_square} for {counts:?}");
    }

    proptest! {
        /// Any valid weights: the arm is in range, has weight, and is the same on
        /// every call.
        #[test]
        fn assignment_is_in_range_weighted_and_sticky(
            key in ".*",
            weights in prop::collection::vec(prop_oneof![Just(0.0), 0.0..100.0f64], 1..8),
        ) {
            prop_assume!(weights.iter().any(|&w| w > 0.0));
            let arm = assign_arm(&key, &weights).unwrap();
            prop_assert!(arm < weights.len());
            prop_assert!(weights[arm] > 0.0);
            prop_assert_eq!(assign_arm(&key, &weights), Ok(arm));
        }

        /// Per-arm shares over 20k random keys stay within 3% of the weights.
        #[test]
        fn random_weights_are_honoured(
            weights in prop::collection::vec(0.1..10.0f64, 2..6),
            salt in any::<u32>(),
        ) {
            let n = 20_000;
            let total: f64 = weights.iter().sum();
            let mut counts = vec![0usize; weights.len()];
            for i in 0..n {
                counts[assign_arm(&format!("{salt}:{i}"), &weights).unwrap()] += 1;
            }
            for (count, w) in counts.iter().zip(&weights) {
                let share = *count as f64 / n as f64;
                prop_assert!((share - w / total).abs() < 0.03, "{:?} vs {:?}", counts, weights);
            }
        }
    }
}
