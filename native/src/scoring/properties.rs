//! Property tests of selection over random candidate sets and constraints.

use proptest::prelude::*;

use super::*;

fn candidate() -> impl Strategy<Value = Candidate> {
    (
        (
            0..6u8,
            any::<u16>(),
            0..64u64,
            prop_oneof![Just(0u64), 1..10_000u64],
            prop_oneof![Just(0.0), 0.1..2_000.0f64],
            prop_oneof![Just(0.0), 1.0..500.0f64],
        ),
        (
            0.0..1e-4f64,
            0.0..1e-4f64,
            prop_oneof![Just(0.0), 0.0..0.05f64],
            0.0..=1.0f64,
            prop_oneof![Just(0u64), 1..16_000_000_000u64],
            prop::sample::select(vec!["local", "ollama", "api"]),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (id, caps, modalities, context_window, latency_ms, tokens_per_second),
                (input, output, request, reliability, memory_bytes, backend, healthy),
            )| Candidate {
                model_id: format!("m{id}"),
                capabilities: u64::from(caps),
                modalities,
                context_window,
                latency_ms,
                tokens_per_second,
                usd_per_input_token: input,
                usd_per_output_token: output,
                usd_per_request: request,
                reliability,
                quality: 0.0,
                memory_bytes,
                backend: backend.to_string(),
                region: String::new(),
                healthy,
            },
        )
}

fn constraints() -> impl Strategy<Value = Constraints> {
    (
        (
            prop_oneof![Just(0u64), 0..64u64],
            0..6u32,
            0..5_000u64,
            0..2_000u64,
            prop_oneof![Just(0.0), 1.0..2_000.0f64],
        ),
        (
            prop_oneof![Just(0.0), 0.0..0.5f64],
            0.0..=1.0f64,
            prop::sample::select(vec!["", "", "local", "api"]),
            prop::collection::vec(0..6u8, 0..3),
            prop_oneof![Just(0u64), 1..16_000_000_000u64],
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (caps, input_modality, prompt_tokens, max_output_tokens, max_latency_ms),
                (max_cost_usd, min_reliability, backend, excluded, max_memory, healthy),
            )| Constraints {
                required_capabilities: caps,
                input_modality,
                prompt_tokens,
                max_output_tokens,
                max_latency_ms,
                max_cost_usd,
                min_reliability,
                preferred_backend: backend.to_string(),
                excluded_models: excluded.into_iter().map(|i| format!("m{i}")).collect(),
                max_memory_bytes: max_memory,
                require_healthy: healthy,
            },
        )
}

fn weights() -> impl Strategy<Value = Weights> {
    (0.0..10.0f64, 0.0..10.0f64, 0.0..10.0f64, 0.0..10.0f64)
        .prop_filter("not all zero", |(a, b, c, d)| a + b + c + d > 0.0)
        .prop_map(|(a, b, c, d)| Weights::new(a, b, c, d).unwrap())
}

/// Every hard constraint, restated independently of `check`.
fn meets_every_constraint(c: &Candidate, k: &Constraints) -> bool {
    let cost = c.estimated_cost_usd(k);
    !k.excluded_models.contains(&c.model_id)
        && (k.preferred_backend.is_empty() || c.backend == k.preferred_backend)
        && (!k.require_healthy || c.healthy)
        && c.capabilities & k.required_capabilities == k.required_capabilities
        && (k.input_modality == 0 || (c.modalities >> k.input_modality) & 1 == 1)
        && (c.context_window == 0 || k.prompt_tokens + k.max_output_tokens <= c.context_window)
        && (k.max_latency_ms == 0.0 || c.latency_ms <= k.max_latency_ms)
        && (k.max_cost_usd == 0.0 || cost <= k.max_cost_usd)
        && c.reliability >= k.min_reliability
        && (k.max_memory_bytes == 0 || c.memory_bytes <= k.max_memory_bytes)
}

proptest! {
    /// Scores stay in [0, 1]; eligibility matches the constraints exactly; the
    /// chosen candidate meets every constraint and no eligible one outranks it.
    #[test]
    fn selection_respects_constraints_and_bounds(
        candidates in prop::collection::vec(candidate(), 1..40),
        k in constraints(),
        w in weights(),
    ) {
        let set = CandidateSet::new(candidates).unwrap();
        let sel = set.select(&k, &w);
        prop_assert_eq!(sel.scores.len(), set.len());
        for (c, s) in set.candidates().iter().zip(&sel.scores) {
            prop_assert_eq!(s.eligible(), meets_every_constraint(c, &k), "{:?}", c);
            prop_assert_eq!(describe(c, &k, s.estimated_cost_usd, s.rejections).is_empty(), s.eligible());
            for v in [s.total, s.criteria.performance, s.criteria.cost,
                      s.criteria.reliability, s.criteria.capabilities] {
                prop_assert!((0.0..=1.0).contains(&v), "{v} out of [0, 1]");
            }
        }
        let any_eligible = sel.scores.iter().any(CandidateScore::eligible);
        prop_assert_eq!(sel.chosen.is_some(), any_eligible);
        if let Some(best) = sel.chosen {
            prop_assert!(meets_every_constraint(&set.candidates()[best], &k));
            for (i, s) in sel.scores.iter().enumerate() {
                prop_assert!(!s.eligible() || s.total <= sel.scores[best].total, "{i} beats {best}");
            }
            prop_assert_eq!(set.ranked(&sel).first().copied(), Some(best));
        }
    }

    /// The same inputs always give the same choice, whatever the candidate order.
    #[test]
    fn the_choice_does_not_depend_on_candidate_order(
        candidates in prop::collection::vec(candidate(), 1..20),
        k in constraints(),
        w in weights(),
    ) {
        let forward = CandidateSet::new(candidates.clone()).unwrap();
        let mut reversed = candidates.clone();
        reversed.reverse();
        let backward = CandidateSet::new(reversed).unwrap();
        let a = forward.select(&k, &w).chosen.map(|i| &forward.candidates()[i]);
        let b = backward.select(&k, &w).chosen.map(|i| &backward.candidates()[i]);
        // Equal candidates are interchangeable; compare what was chosen, not where.
        prop_assert_eq!(a, b);
    }
}
