//! Model selection: drop the candidates that violate a hard constraint, score the
//! rest on four criteria normalised across the eligible set, pick the best.
//!
//! Criteria, each within [0, 1]:
//! - performance: the mean of a latency score (lowest eligible latency / this
//!   latency) and a throughput score (this tokens/s / highest eligible tokens/s);
//!   an unknown (0) metric scores a neutral 0.5.
//! - cost: the estimated cost of this request (see `Candidate::estimated_cost_usd`)
//!   mapped linearly from cheapest eligible = 1 to dearest eligible = 0; 1 for all
//!   when they cost the same.
//! - reliability: the candidate's own reliability, already a share.
//! - capabilities: capabilities beyond the required ones, relative to the eligible
//!   candidate with the most (headroom for a later turn needing tools or vision);
//!   1 for all when none has extras. When any eligible candidate has a quality (an
//!   evaluation suite's score), the mean of that and its quality, an unevaluated
//!   candidate's quality a neutral 0.5.
//!
//! The total is the weighted sum. Ties go to the lower estimated cost, then the
//! lower `model_id`, then the lower index, so a selection is deterministic.

mod error;
mod hard_constraints;
mod inputs;
#[cfg(test)]
mod properties;

use std::cmp::Ordering;

pub use error::ScoringError;
pub use hard_constraints::{check, describe, Rejections};
pub use inputs::{Candidate, Constraints, Criteria, Weights};

/// Candidates validated once and scored many times.
#[derive(Debug, Clone)]
pub struct CandidateSet {
    candidates: Vec<Candidate>,
}

/// One candidate's outcome. `criteria` and `total` are 0 when not eligible.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CandidateScore {
    pub estimated_cost_usd: f64,
    pub rejections: Rejections,
    pub criteria: Criteria,
    pub total: f64,
}

impl CandidateScore {
    pub fn eligible(&self) -> bool {
        self.rejections.is_empty()
    }
}

/// The outcome for every candidate, in candidate order, and the winner's index.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub scores: Vec<CandidateScore>,
    pub chosen: Option<usize>,
}

/// Eligible-set extremes the criteria are normalised against.
struct Extremes {
    min_latency: f64,
    max_tokens_per_second: f64,
    min_cost: f64,
    max_cost: f64,
    max_extra_capabilities: u32,
    any_quality: bool,
}

impl CandidateSet {
    /// Validates every candidate (finite, non-negative metrics; reliability a share).
    pub fn new(candidates: Vec<Candidate>) -> Result<Self, ScoringError> {
        if candidates.is_empty() {
            return Err(ScoringError::NoCandidates);
        }
        for candidate in &candidates {
            candidate.validate()?;
        }
        Ok(Self { candidates })
    }

    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    pub fn len(&self) -> usize {
        self.candidates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    /// Scores every candidate against validated `constraints` and `weights`. Two
    /// passes, one allocation (the result vector).
    pub fn select(&self, constraints: &Constraints, weights: &Weights) -> Selection {
        let mut scores = Vec::with_capacity(self.candidates.len());
        let mut ext = Extremes {
            min_latency: f64::INFINITY,
            max_tokens_per_second: 0.0,
            min_cost: f64::INFINITY,
            max_cost: f64::NEG_INFINITY,
            max_extra_capabilities: 0,
            any_quality: false,
        };
        for c in &self.candidates {
            let cost = c.estimated_cost_usd(constraints);
            let rejections = check(c, constraints, cost);
            if rejections.is_empty() {
                if c.latency_ms > 0.0 {
                    ext.min_latency = ext.min_latency.min(c.latency_ms);
                }
                ext.max_tokens_per_second = ext.max_tokens_per_second.max(c.tokens_per_second);
                ext.min_cost = ext.min_cost.min(cost);
                ext.max_cost = ext.max_cost.max(cost);
                ext.max_extra_capabilities = ext
                    .max_extra_capabilities
                    .max(extra_capabilities(c, constraints));
                ext.any_quality |= c.quality > 0.0;
            }
            scores.push(CandidateScore {
                estimated_cost_usd: cost,
                rejections,
                criteria: Criteria::default(),
                total: 0.0,
            });
        }
        for (c, score) in self.candidates.iter().zip(scores.iter_mut()) {
            if score.eligible() {
                score.criteria = criteria(c, score.estimated_cost_usd, constraints, &ext);
                score.total = score.criteria.total(weights);
            }
        }
        let mut chosen: Option<usize> = None;
        for i in 0..scores.len() {
            if scores[i].eligible()
                && chosen.is_none_or(|best| self.compare(&scores, i, best) == Ordering::Less)
            {
                chosen = Some(i);
            }
        }
        Selection { scores, chosen }
    }

    /// Eligible indices, best first (the order a fallback chain should try).
    pub fn ranked(&self, selection: &Selection) -> Vec<usize> {
        let mut order: Vec<usize> = (0..selection.scores.len())
            .filter(|&i| selection.scores[i].eligible())
            .collect();
        order.sort_by(|&a, &b| self.compare(&selection.scores, a, b));
        order
    }

    /// Orders two scored candidates: higher total, then lower estimated cost, then
    /// lower model id, then lower index.
    pub fn compare(&self, scores: &[CandidateScore], a: usize, b: usize) -> Ordering {
        let (sa, sb) = (&scores[a], &scores[b]);
        sb.total
            .total_cmp(&sa.total)
            .then(sa.estimated_cost_usd.total_cmp(&sb.estimated_cost_usd))
            .then_with(|| {
                self.candidates[a]
                    .model_id
                    .cmp(&self.candidates[b].model_id)
            })
            .then(a.cmp(&b))
    }
}

/// Capabilities beyond the required ones.
fn extra_capabilities(c: &Candidate, constraints: &Constraints) -> u32 {
    (c.capabilities & !constraints.required_capabilities).count_ones()
}

/// The four criterion scores of an eligible candidate (see the module docs).
fn criteria(c: &Candidate, cost: f64, constraints: &Constraints, ext: &Extremes) -> Criteria {
    const UNKNOWN: f64 = 0.5;
    let latency = if c.latency_ms > 0.0 {
        ext.min_latency / c.latency_ms
    } else {
        UNKNOWN
    };
    let throughput = if c.tokens_per_second > 0.0 {
        c.tokens_per_second / ext.max_tokens_per_second
    } else {
        UNKNOWN
    };
    let extras = if ext.max_extra_capabilities == 0 {
        1.0
    } else {
        f64::from(extra_capabilities(c, constraints)) / f64::from(ext.max_extra_capabilities)
    };
    let capabilities = if ext.any_quality {
        let quality = if c.quality > 0.0 { c.quality } else { UNKNOWN };
        (extras + quality) / 2.0
    } else {
        extras
    };
    Criteria {
        performance: ((latency + throughput) / 2.0).clamp(0.0, 1.0),
        cost: lower_is_better(cost, ext.min_cost, ext.max_cost),
        reliability: c.reliability,
        capabilities,
    }
}

/// `value` mapped linearly from `min` (1) to `max` (0); 1 when they are equal.
/// Copes with an infinite `max` (prices near f64::MAX times many tokens).
fn lower_is_better(value: f64, min: f64, max: f64) -> f64 {
    if max <= min {
        return 1.0;
    }
    let score = (max - value) / (max - min);
    if score.is_nan() {
        // inf - inf: only `value == max` reaches this with a finite `min`.
        if value == max {
            0.0
        } else {
            1.0
        }
    } else {
        score.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(id: &str, latency_ms: f64, tokens_per_second: f64, usd_per_request: f64) -> Candidate {
        Candidate {
            latency_ms,
            tokens_per_second,
            usd_per_request,
            ..Candidate::new(id)
        }
    }

    fn equal() -> Weights {
        Weights::new(1.0, 1.0, 1.0, 1.0).unwrap()
    }

    #[test]
    fn an_evaluated_quality_moves_the_capabilities_criterion() {
        let weights = Weights::new(0.0, 0.0, 0.0, 1.0).unwrap();
        let plain = |id: &str| Candidate::new(id);
        // No quality anywhere: the criterion is the extras alone (1 for all), the id decides.
        let set = CandidateSet::new(vec![plain("a/first"), plain("b/second")]).unwrap();
        let picked = set.select(&Constraints::default(), &weights).chosen;
        assert_eq!(picked, Some(0));
        // b evaluated well, a not at all: b leads, a scores the neutral 0.5 for quality.
        let good = Candidate {
            quality: 0.9,
            ..plain("b/second")
        };
        let set = CandidateSet::new(vec![plain("a/first"), good]).unwrap();
        let selection = set.select(&Constraints::default(), &weights);
        assert_eq!(selection.chosen, Some(1));
        assert_eq!(selection.scores[0].criteria.capabilities, 0.75);
        assert_eq!(selection.scores[1].criteria.capabilities, 0.95);
        // Evaluated badly: below the unevaluated one.
        let poor = Candidate {
            quality: 0.2,
            ..plain("b/second")
        };
        let set = CandidateSet::new(vec![plain("a/first"), poor]).unwrap();
        assert_eq!(
            set.select(&Constraints::default(), &weights).chosen,
            Some(0)
        );
        let out_of_range = Candidate {
            quality: 1.5,
            ..plain("c/over")
        };
        assert!(CandidateSet::new(vec![out_of_range]).is_err());
    }

    #[test]
    fn rejects_an_empty_set_and_bad_metrics() {
        assert_eq!(
            CandidateSet::new(vec![]).unwrap_err(),
            ScoringError::NoCandidates
        );
        let bad = model("x/nan", f64::NAN, 1.0, 0.0);
        assert_eq!(
            CandidateSet::new(vec![model("ok", 1.0, 1.0, 0.0), bad])
                .unwrap_err()
                .to_string(),
            "candidate 'x/nan': latency_ms must be a finite number >= 0, got NaN"
        );
    }

    #[test]
    fn faster_cheaper_wins_and_criteria_are_normalised() {
        let set = CandidateSet::new(vec![
            model("slow", 400.0, 50.0, 0.02),
            model("fast", 100.0, 100.0, 0.01),
            model("mid", 200.0, 0.0, 0.03),
        ])
        .unwrap();
        let sel = set.select(&Constraints::default(), &equal());
        assert_eq!(sel.chosen, Some(1));
        let slow = sel.scores[0].criteria;
        assert_eq!(slow.performance, (0.25 + 0.5) / 2.0);
        assert_eq!(slow.cost, 0.5);
        assert_eq!(sel.scores[1].criteria.performance, 1.0);
        // Unknown throughput is neutral.
        assert_eq!(sel.scores[2].criteria.performance, (0.5 + 0.5) / 2.0);
        assert_eq!(sel.scores[2].criteria.cost, 0.0);
        assert_eq!(set.ranked(&sel), vec![1, 0, 2]);
    }

    #[test]
    fn weights_change_the_winner() {
        let set = CandidateSet::new(vec![
            model("fast-dear", 50.0, 200.0, 1.0),
            model("slow-cheap", 500.0, 20.0, 0.0),
        ])
        .unwrap();
        let by_speed = Weights::new(1.0, 0.0, 0.0, 0.0).unwrap();
        let by_cost = Weights::new(0.0, 1.0, 0.0, 0.0).unwrap();
        let k = Constraints::default();
        assert_eq!(set.select(&k, &by_speed).chosen, Some(0));
        assert_eq!(set.select(&k, &by_cost).chosen, Some(1));
    }

    #[test]
    fn ties_go_to_lower_cost_then_model_id_then_index() {
        let w = Weights::new(0.0, 0.0, 1.0, 0.0).unwrap();
        let k = Constraints::default();
        let set = CandidateSet::new(vec![
            model("b", 0.0, 0.0, 0.0),
            model("a", 0.0, 0.0, 0.5),
            model("a", 0.0, 0.0, 0.0),
            model("c", 0.0, 0.0, 0.0),
        ])
        .unwrap();
        let sel = set.select(&k, &w);
        assert_eq!(sel.chosen, Some(2));
        assert_eq!(set.ranked(&sel), vec![2, 0, 3, 1]);
        let twins = CandidateSet::new(vec![model("a", 0.0, 0.0, 0.0); 3]).unwrap();
        assert_eq!(twins.select(&k, &w).chosen, Some(0));
    }

    #[test]
    fn capability_headroom_counts_extras_beyond_the_required() {
        let mut narrow = Candidate::new("narrow");
        narrow.capabilities = 0b110;
        let mut broad = Candidate::new("broad");
        broad.capabilities = 0b11110;
        let set = CandidateSet::new(vec![narrow, broad]).unwrap();
        let k = Constraints {
            required_capabilities: 0b100,
            ..Constraints::default()
        };
        let sel = set.select(&k, &Weights::new(0.0, 0.0, 0.0, 1.0).unwrap());
        assert_eq!(sel.scores[0].criteria.capabilities, 1.0 / 3.0);
        assert_eq!(sel.scores[1].criteria.capabilities, 1.0);
        assert_eq!(sel.chosen, Some(1));
    }

    #[test]
    fn nothing_eligible_means_no_choice() {
        let mut sick = Candidate::new("sick");
        sick.healthy = false;
        let set = CandidateSet::new(vec![sick]).unwrap();
        let sel = set.select(&Constraints::default(), &equal());
        assert_eq!(sel.chosen, None);
        assert!(!sel.scores[0].eligible());
        assert_eq!(sel.scores[0].total, 0.0);
        assert!(set.ranked(&sel).is_empty());
    }

    /// Kills `>` → `>=` on `latency_ms > 0.0` in `select` and in `criteria`: an
    /// unknown (0) latency scores a neutral 0.5 and does not count as the fastest.
    #[test]
    fn an_unknown_latency_is_neutral_and_not_the_fastest() {
        let set = CandidateSet::new(vec![
            model("unmeasured", 0.0, 100.0, 0.0),
            model("measured", 200.0, 100.0, 0.0),
        ])
        .unwrap();
        let sel = set.select(&Constraints::default(), &equal());
        assert_eq!(sel.scores[0].criteria.performance, (0.5 + 1.0) / 2.0);
        assert_eq!(sel.scores[1].criteria.performance, (1.0 + 1.0) / 2.0);
    }

    /// Kills `CandidateSet::is_empty` → `true`. (`false` is equivalent: `new`
    /// refuses an empty set.)
    #[test]
    fn a_set_holds_its_candidates() {
        let set = CandidateSet::new(vec![Candidate::new("a"), Candidate::new("b")]).unwrap();
        assert_eq!((set.len(), set.is_empty()), (2, false));
    }

    #[test]
    fn lower_is_better_handles_equal_and_infinite_ranges() {
        assert_eq!(lower_is_better(3.0, 3.0, 3.0), 1.0);
        assert_eq!(lower_is_better(2.0, 1.0, 3.0), 0.5);
        assert_eq!(lower_is_better(f64::INFINITY, 1.0, f64::INFINITY), 0.0);
        assert_eq!(lower_is_better(5.0, 1.0, f64::INFINITY), 1.0);
    }
}
