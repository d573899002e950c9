//! Hard constraints: which candidates may serve a request at all, and why not.
//!
//! Checking records a bit per violated constraint; the human-readable reason is
//! only formatted when someone reads it, so a `select` over 100 candidates
//! allocates no strings.

use std::fmt::Write;

use super::inputs::{Candidate, Constraints};
use crate::num::Num;

/// The constraints a candidate violates, one bit each; empty means eligible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rejections(u16);

const EXCLUDED: u16 = 1 << 0;
const BACKEND: u16 = 1 << 1;
const UNHEALTHY: u16 = 1 << 2;
const CAPABILITIES: u16 = 1 << 3;
const MODALITY: u16 = 1 << 4;
const CONTEXT: u16 = 1 << 5;
const LATENCY: u16 = 1 << 6;
const COST: u16 = 1 << 7;
const RELIABILITY: u16 = 1 << 8;
const MEMORY: u16 = 1 << 9;

impl Rejections {
    /// True when no constraint is violated.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    fn has(self, bit: u16) -> bool {
        self.0 & bit != 0
    }
}

/// `modelyard.v1.Capability` names by value, without the `CAPABILITY_` prefix.
const CAPABILITY_NAMES: [&str; 15] = [
    "unspecified",
    "text_generation",
    "chat",
    "embedding",
    "vision",
    "tools",
    "json_output",
    "speech_to_text",
    "text_to_speech",
    "image_classification",
    "feature_extraction",
    "code",
    "reasoning",
    "streaming",
    "assistant_prefill",
];

/// `modelyard.v1.Modality` names by value, without the `MODALITY_` prefix.
const MODALITY_NAMES: [&str; 6] = [
    "unspecified",
    "text",
    "image",
    "audio",
    "structured",
    "tensor",
];

/// Checks every constraint. Unknown metrics (0 context window, latency or memory)
/// pass their constraint: a model nobody has measured yet must stay selectable,
/// or it would never get the traffic that measures it.
pub fn check(c: &Candidate, k: &Constraints, estimated_cost_usd: f64) -> Rejections {
    let mut bits = 0;
    let mut flag = |violated: bool, bit: u16| {
        if violated {
            bits |= bit;
        }
    };
    flag(k.excludes(&c.model_id), EXCLUDED);
    flag(
        !k.preferred_backend.is_empty() && c.backend != k.preferred_backend,
        BACKEND,
    );
    flag(k.require_healthy && !c.healthy, UNHEALTHY);
    flag(k.required_capabilities & !c.capabilities != 0, CAPABILITIES);
    flag(
        k.input_modality != 0 && c.modalities & (1u64 << k.input_modality) == 0,
        MODALITY,
    );
    flag(
        c.context_window != 0 && k.tokens_needed() > c.context_window,
        CONTEXT,
    );
    flag(
        k.max_latency_ms > 0.0 && c.latency_ms > k.max_latency_ms,
        LATENCY,
    );
    flag(
        k.max_cost_usd > 0.0 && estimated_cost_usd > k.max_cost_usd,
        COST,
    );
    flag(c.reliability < k.min_reliability, RELIABILITY);
    flag(
        k.max_memory_bytes != 0 && c.memory_bytes > k.max_memory_bytes,
        MEMORY,
    );
    Rejections(bits)
}

/// Every violated constraint with the values involved, joined by "; "; empty
/// when eligible. Capabilities and modalities are spelled as in common.proto
/// (`vision`, `image`), unknown values as their number.
pub fn describe(
    c: &Candidate,
    k: &Constraints,
    estimated_cost_usd: f64,
    rejections: Rejections,
) -> String {
    let mut out = String::new();
    let mut part = |bit: u16, write: &dyn Fn(&mut String)| {
        if rejections.has(bit) {
            if !out.is_empty() {
                out.push_str("; ");
            }
            write(&mut out);
        }
    };
    // `write!` to a String cannot fail, hence the ignored results.
    part(EXCLUDED, &|s| s.push_str("excluded by the request"));
    part(BACKEND, &|s| {
        let _ = write!(
            s,
            "backend '{}' is not the required backend '{}'",
            c.backend, k.preferred_backend
        );
    });
    part(UNHEALTHY, &|s| s.push_str("unhealthy"));
    part(CAPABILITIES, &|s| {
        s.push_str("missing capabilities: ");
        write_names(
            s,
            k.required_capabilities & !c.capabilities,
            &CAPABILITY_NAMES,
            "capability",
        );
    });
    part(MODALITY, &|s| {
        s.push_str("does not accept ");
        write_names(s, 1u64 << k.input_modality, &MODALITY_NAMES, "modality");
        s.push_str(" input");
    });
    part(CONTEXT, &|s| {
        let _ = write!(
            s,
            "context window {} < prompt {} + max_output {} tokens",
            c.context_window, k.prompt_tokens, k.max_output_tokens
        );
    });
    part(LATENCY, &|s| {
        let _ = write!(
            s,
            "latency {} ms > max {} ms",
            Num(c.latency_ms),
            Num(k.max_latency_ms)
        );
    });
    part(COST, &|s| {
        let _ = write!(
            s,
            "estimated cost ${} > max ${}",
            Num(estimated_cost_usd),
            Num(k.max_cost_usd)
        );
    });
    part(RELIABILITY, &|s| {
        let _ = write!(
            s,
            "reliability {} < min {}",
            Num(c.reliability),
            Num(k.min_reliability)
        );
    });
    part(MEMORY, &|s| {
        let _ = write!(
            s,
            "memory {} bytes > max {} bytes",
            c.memory_bytes, k.max_memory_bytes
        );
    });
    out
}

/// Names of the set bits, lowest first, comma separated.
fn write_names(out: &mut String, mask: u64, names: &[&str], kind: &str) {
    let mut first = true;
    for bit in 0..64 {
        if mask & (1u64 << bit) == 0 {
            continue;
        }
        if !first {
            out.push_str(", ");
        }
        first = false;
        match names.get(bit) {
            Some(name) => out.push_str(name),
            None => {
                let _ = write!(out, "{kind} {bit}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(c: &Candidate, k: &Constraints) -> String {
        let cost = c.estimated_cost_usd(k);
        describe(c, k, cost, check(c, k, cost))
    }

    #[test]
    fn an_unconstrained_healthy_candidate_is_eligible() {
        let c = Candidate::new("m");
        let k = Constraints::default();
        assert!(check(&c, &k, 0.0).is_empty());
        assert_eq!(reason(&c, &k), "");
    }

    #[test]
    fn reasons_name_the_constraint_and_values() {
        let mut c = Candidate::new("local/tiny");
        c.context_window = 2048;
        c.capabilities = 1 << 1 | 1 << 2;
        c.modalities = 1 << 1;
        c.latency_ms = 850.0;
        c.usd_per_request = 0.02;
        c.reliability = 0.9;
        c.memory_bytes = 8_000_000_000;
        c.backend = "local".into();
        c.healthy = false;
        let k = Constraints {
            required_capabilities: 1 << 2 | 1 << 4 | 1 << 5 | 1 << 40,
            input_modality: 2,
            prompt_tokens: 3000,
            max_output_tokens: 256,
            max_latency_ms: 500.0,
            max_cost_usd: 0.01,
            min_reliability: 0.95,
            preferred_backend: "ollama".into(),
            excluded_models: vec!["other".into(), "local/tiny".into()],
            max_memory_bytes: 4_000_000_000,
            require_healthy: true,
        };
        assert_eq!(
            reason(&c, &k),
            "excluded by the request; \
             backend 'local' is not the required backend 'ollama'; \
             unhealthy; \
             missing capabilities: vision, tools, capability 40; \
             does not accept image input; \
             context window 2048 < prompt 3000 + max_output 256 tokens; \
             latency 850 ms > max 500 ms; \
             estimated cost $0.02 > max $0.01; \
             reliability 0.9 < min 0.95; \
             memory 8000000000 bytes > max 4000000000 bytes"
        );
    }

    #[test]
    fn unknown_metrics_pass_their_constraints() {
        let c = Candidate::new("new-model");
        let k = Constraints {
            prompt_tokens: 1_000_000,
            max_latency_ms: 1.0,
            max_memory_bytes: 1,
            ..Constraints::default()
        };
        assert!(check(&c, &k, 0.0).is_empty());
    }

    #[test]
    fn limits_are_inclusive_and_health_can_be_waived() {
        let mut c = Candidate::new("m");
        c.context_window = 100;
        c.latency_ms = 500.0;
        c.healthy = false;
        let k = Constraints {
            prompt_tokens: 60,
            max_output_tokens: 40,
            max_latency_ms: 500.0,
            require_healthy: false,
            ..Constraints::default()
        };
        assert!(check(&c, &k, 0.0).is_empty());
    }

    /// Kills `estimated_cost_usd > k.max_cost_usd` → `>=`: a request that costs
    /// exactly the maximum is affordable; one ulp more is not.
    #[test]
    fn a_cost_equal_to_the_maximum_passes_and_one_ulp_more_is_rejected() {
        let k = Constraints {
            max_cost_usd: 0.01,
            ..Constraints::default()
        };
        let mut c = Candidate::new("m");
        c.usd_per_request = 0.01;
        assert_eq!(reason(&c, &k), "");
        c.usd_per_request = 0.01f64.next_up();
        assert_eq!(
            reason(&c, &k),
            "estimated cost $0.010000000000000002 > max $0.01"
        );
    }

    /// Kills `c.memory_bytes > k.max_memory_bytes` → `>=`: a model that needs
    /// exactly the memory allowed fits; one byte more does not.
    #[test]
    fn a_memory_equal_to_the_maximum_passes_and_one_byte_more_is_rejected() {
        let k = Constraints {
            max_memory_bytes: 4_000_000_000,
            ..Constraints::default()
        };
        let mut c = Candidate::new("m");
        c.memory_bytes = 4_000_000_000;
        assert_eq!(reason(&c, &k), "");
        c.memory_bytes += 1;
        assert_eq!(
            reason(&c, &k),
            "memory 4000000001 bytes > max 4000000000 bytes"
        );
    }

    /// Kills `c.reliability < k.min_reliability` → `<=`: a candidate exactly at
    /// the minimum qualifies; one ulp under it does not.
    #[test]
    fn a_reliability_equal_to_the_minimum_passes_and_one_ulp_less_is_rejected() {
        let k = Constraints {
            min_reliability: 0.95,
            ..Constraints::default()
        };
        let mut c = Candidate::new("m");
        c.reliability = 0.95;
        assert_eq!(reason(&c, &k), "");
        c.reliability = 0.95f64.next_down();
        assert_eq!(reason(&c, &k), "reliability 0.9499999999999998 < min 0.95");
    }
}
