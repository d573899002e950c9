//! The balancing strategies and the names configs and Python call them by.
//!
//! Each name is written once, in `Strategy::name`; parsing, the error message
//! and `modelyard._native.STRATEGIES` all read it from there.

/// How to choose among usable deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Each in turn.
    RoundRobin,
    /// Fewest calls in flight.
    LeastLoaded,
    /// Two random picks; the one with the lower (latency EWMA + 1 ms) × (in flight + 1).
    PowerOfTwoChoices,
    /// Cheapest; ties by fewest in flight.
    CostOptimized,
    /// Least loaded in the caller's region, else least loaded anywhere.
    RegionAffinity,
}

impl Strategy {
    /// Every strategy, in the order they are documented and exported.
    pub const ALL: [Self; 5] = [
        Self::RoundRobin,
        Self::LeastLoaded,
        Self::PowerOfTwoChoices,
        Self::CostOptimized,
        Self::RegionAffinity,
    ];

    /// The name configs, the wire and Python use.
    pub const fn name(self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::LeastLoaded => "least_loaded",
            Self::PowerOfTwoChoices => "p2c",
            Self::CostOptimized => "cost_optimized",
            Self::RegionAffinity => "region_affinity",
        }
    }

    /// Every name, in `ALL` order.
    pub fn names() -> [&'static str; 5] {
        Self::ALL.map(Self::name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_pinned_and_distinct() {
        // Configs in the field spell these; renaming one breaks them.
        assert_eq!(
            Strategy::names(),
            [
                "round_robin",
                "least_loaded",
                "p2c",
                "cost_optimized",
                "region_affinity"
            ]
        );
        for (i, s) in Strategy::ALL.iter().enumerate() {
            assert!(Strategy::ALL[..i].iter().all(|t| t != s), "{s:?} twice");
        }
    }
}
