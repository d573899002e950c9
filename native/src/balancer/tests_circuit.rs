//! The pool's circuits: probes handed out once and first, open periods that
//! double up to the cap while probes fail, and one good probe closing.

use proptest::prelude::*;

use super::*;
// `super::Strategy` (the balancing strategy) shadows proptest's glob-imported trait.
use super::Strategy;

/// `n` deployments (0 the dearest, so `CostOptimized` never prefers it), all of
/// which may be out at once.
fn pool(n: usize, failures: u32, base: f64, cap: f64, probe_timeout: f64) -> DeploymentPool {
    let deployments = (0..n)
        .map(|i| Deployment {
            endpoint: format!("host{i}:50051"),
            region: "eu".to_owned(),
            usd_cost: (n - i) as f64,
        })
        .collect();
    let policy = OutlierPolicy::new(failures, base, cap, probe_timeout, 1.0).unwrap();
    DeploymentPool::new(deployments, policy, 0.5, 7).unwrap()
}

/// `times` failed calls to `i`, each 5 ms long, ending at `now`.
fn fail(p: &mut DeploymentPool, i: usize, times: u32, now: f64) {
    for _ in 0..times {
        p.start(i).unwrap();
        p.finish(i, 5.0, false, now).unwrap();
    }
}

fn none_usable(p: &mut DeploymentPool, now: f64) -> bool {
    matches!(
        p.pick(Strategy::LeastLoaded, "", now),
        Err(BalanceError::NoneUsable { .. })
    )
}

#[test]
fn the_probe_comes_first_whatever_the_strategy_and_only_once() {
    let mut p = pool(3, 2, 10.0, 40.0, 60.0);
    fail(&mut p, 0, 2, 100.0);
    assert_eq!(p.phase(0, 105.0), Ok(CircuitPhase::Open));
    assert_eq!(p.pick(Strategy::CostOptimized, "", 105.0), Ok(2));
    assert_eq!(p.phase(0, 110.0), Ok(CircuitPhase::HalfOpen));
    // Cost-optimized would never choose dear deployment 0, but its probe is due.
    assert_eq!(p.pick(Strategy::CostOptimized, "", 110.0), Ok(0));
    for strategy in Strategy::ALL {
        assert_ne!(p.pick(strategy, "eu", 110.5), Ok(0), "{strategy:?}");
    }
    assert_eq!(p.phase(0, 110.5), Ok(CircuitPhase::HalfOpen));
}

#[test]
fn concurrent_picks_of_a_lone_half_open_deployment_find_none_usable() {
    let mut p = pool(1, 1, 1.0, 4.0, 60.0);
    fail(&mut p, 0, 1, 0.0);
    assert!(none_usable(&mut p, 0.5));
    assert_eq!(p.pick(Strategy::RoundRobin, "", 1.0), Ok(0));
    assert_eq!(
        p.pick(Strategy::RoundRobin, "", 1.0),
        Err(BalanceError::NoneUsable {
            total: 1,
            unhealthy: 0,
            ejected: 1,
        })
    );
}

#[test]
fn a_good_probe_closes_and_the_next_outage_starts_at_base() {
    let mut p = pool(2, 2, 10.0, 40.0, 60.0);
    fail(&mut p, 0, 2, 0.0);
    assert_eq!(p.pick(Strategy::RoundRobin, "", 10.0), Ok(0));
    p.start(0).unwrap();
    p.finish(0, 5.0, false, 10.0).unwrap();
    assert_eq!(p.stats(0).unwrap().ejected_until, 30.0); // 20 s: doubled
    assert_eq!(p.pick(Strategy::RoundRobin, "", 30.0), Ok(0));
    p.start(0).unwrap();
    p.finish(0, 5.0, true, 30.0).unwrap();
    assert_eq!(p.phase(0, 30.0), Ok(CircuitPhase::Closed));
    assert_eq!(p.open_circuits(), 0);
    let picks: Vec<usize> = (0..4)
        .map(|_| p.pick(Strategy::RoundRobin, "", 30.0).unwrap())
        .collect();
    assert_eq!(picks, vec![0, 1, 0, 1]);
    fail(&mut p, 0, 2, 50.0);
    assert_eq!(p.stats(0).unwrap().ejected_until, 60.0); // back to 10 s
}

#[test]
fn a_call_in_flight_since_before_the_opening_does_not_decide_the_probe() {
    let mut p = pool(2, 1, 10.0, 40.0, 60.0);
    p.start(0).unwrap(); // a long call, started at 0
    fail(&mut p, 0, 1, 1.0);
    assert_eq!(p.pick(Strategy::RoundRobin, "", 11.0), Ok(0));
    p.start(0).unwrap();
    // The long call ends well: it began at 12 - 12 = 0, before the opening at 1.
    p.finish(0, 12_000.0, true, 12.0).unwrap();
    assert_eq!(p.phase(0, 12.0), Ok(CircuitPhase::HalfOpen));
    p.finish(0, 1_000.0, true, 12.0).unwrap(); // the probe, begun at 11
    assert_eq!(p.phase(0, 12.0), Ok(CircuitPhase::Closed));
}

#[test]
fn a_probe_that_never_finishes_times_out_into_a_longer_open_period() {
    let mut p = pool(1, 1, 1.0, 8.0, 3.0);
    fail(&mut p, 0, 1, 0.0);
    assert_eq!(p.pick(Strategy::LeastLoaded, "", 1.0), Ok(0)); // leaked
    assert!(none_usable(&mut p, 3.9));
    assert_eq!(p.phase(0, 3.9), Ok(CircuitPhase::HalfOpen));
    // Timed out at 1 + 3 = 4 s, then open for the second period, 2 s.
    assert_eq!(p.phase(0, 4.0), Ok(CircuitPhase::Open));
    assert!(none_usable(&mut p, 5.9));
    assert_eq!(p.pick(Strategy::LeastLoaded, "", 6.0), Ok(0));
    p.start(0).unwrap();
    p.finish(0, 5.0, true, 6.5).unwrap();
    assert_eq!(p.phase(0, 6.5), Ok(CircuitPhase::Closed));
}

#[test]
fn an_unhealthy_deployment_gets_no_probe() {
    let mut p = pool(2, 1, 1.0, 8.0, 3.0);
    fail(&mut p, 0, 1, 0.0);
    p.set_healthy(0, false).unwrap();
    assert!(!p.is_usable(0, 1.0));
    assert_eq!(p.pick(Strategy::CostOptimized, "", 1.0), Ok(1));
    p.set_healthy(0, true).unwrap();
    assert_eq!(p.pick(Strategy::CostOptimized, "", 1.0), Ok(0));
}

#[test]
fn phase_checks_its_arguments() {
    let p = pool(1, 1, 1.0, 1.0, 1.0);
    assert!(matches!(
        p.phase(1, 0.0),
        Err(BalanceError::IndexOutOfRange { index: 1, len: 1 })
    ));
    assert!(matches!(
        p.phase(0, f64::NAN),
        Err(BalanceError::InvalidParameter { name: "now", .. })
    ));
}

#[test]
fn a_trip_opens_a_closed_circuit_once_and_the_probe_and_backoff_follow() {
    let mut p = pool(2, 5, 10.0, 40.0, 60.0);
    assert_eq!(p.trip(0, 100.0), Ok(true));
    assert_eq!(p.open_circuits(), 1);
    assert_eq!(p.phase(0, 105.0), Ok(CircuitPhase::Open));
    assert_eq!(p.stats(0).unwrap().ejected_until, 110.0); // the base period
    assert_eq!(p.trip(0, 105.0), Ok(false)); // open already: not again, not counted twice
    assert_eq!(p.open_circuits(), 1);
    assert_eq!(p.pick(Strategy::CostOptimized, "", 105.0), Ok(1));
    // Its probe is due at the end of the period; a failed one doubles it.
    assert_eq!(p.pick(Strategy::CostOptimized, "", 110.0), Ok(0));
    p.start(0).unwrap();
    p.finish(0, 5.0, false, 110.0).unwrap();
    assert_eq!(p.stats(0).unwrap().ejected_until, 130.0);
    assert_eq!(p.trip(0, 115.0), Ok(false));
    // A good probe closes it, and the count of open circuits goes back.
    assert_eq!(p.pick(Strategy::CostOptimized, "", 130.0), Ok(0));
    p.start(0).unwrap();
    p.finish(0, 5.0, true, 130.0).unwrap();
    assert_eq!(p.phase(0, 130.0), Ok(CircuitPhase::Closed));
    assert_eq!(p.open_circuits(), 0);
    assert_eq!(p.trip(0, 131.0), Ok(true));
    assert_eq!(p.stats(0).unwrap().ejected_until, 141.0); // from base again
}

#[test]
fn a_trip_keeps_within_the_cap_on_open_circuits() {
    let deployments = (0..2)
        .map(|i| Deployment {
            endpoint: format!("host{i}:50051"),
            region: "eu".to_owned(),
            usd_cost: 1.0,
        })
        .collect();
    let policy = OutlierPolicy::new(5, 10.0, 40.0, 60.0, 0.5).unwrap();
    let mut p = DeploymentPool::new(deployments, policy, 0.5, 7).unwrap();
    assert_eq!(p.trip(0, 0.0), Ok(true));
    assert_eq!(p.trip(1, 0.0), Ok(false)); // half of two may be out: one
    assert_eq!(p.phase(1, 0.0), Ok(CircuitPhase::Closed));
    assert!(!none_usable(&mut p, 1.0));
}

#[test]
fn trip_checks_its_arguments() {
    let mut p = pool(1, 1, 1.0, 1.0, 1.0);
    assert!(matches!(
        p.trip(1, 0.0),
        Err(BalanceError::IndexOutOfRange { index: 1, len: 1 })
    ));
    assert!(matches!(
        p.trip(0, f64::INFINITY),
        Err(BalanceError::InvalidParameter { name: "now", .. })
    ));
    assert_eq!(p.open_circuits(), 0);
}

proptest! {
    /// A deployment that keeps failing is open for base, 2 × base, 4 × base, …
    /// at most the cap, measured from each failed probe's finish; between
    /// periods exactly one pick probes it and the others find another
    /// deployment (or none).
    #[test]
    fn failed_probes_double_the_open_period_up_to_the_cap(
        base in 0.01..100.0f64,
        cap_factor in 1.0..64.0f64,
        failures in 1..6u32,
        probes in 1..12usize,
        with_spare in any::<bool>(),
        waits in prop::collection::vec(0.0..5.0f64, 12),
        latencies in prop::collection::vec(0.0..2_000.0f64, 12),
    ) {
        let cap = base * cap_factor;
        let mut p = pool(if with_spare { 2 } else { 1 }, failures, base, cap, 1e6);
        fail(&mut p, 0, failures, 1000.0);
        let mut period = base;
        let mut opened = 1000.0;
        for k in 0..probes {
            let until = p.stats(0).unwrap().ejected_until;
            prop_assert_eq!(until, opened + period);
            prop_assert_eq!(p.phase(0, until - base / 2.0), Ok(CircuitPhase::Open));
            let at = until + waits[k];
            prop_assert_eq!(p.pick(Strategy::LeastLoaded, "", at), Ok(0));
            match p.pick(Strategy::LeastLoaded, "", at) {
                Ok(other) => prop_assert_eq!(other, 1),
                Err(e) => prop_assert!(!with_spare, "{}", e),
            }
            p.start(0).unwrap();
            opened = at + latencies[k] / 1000.0;
            p.finish(0, latencies[k], false, opened).unwrap();
            period = (period * 2.0).min(cap);
        }
        prop_assert_eq!(p.stats(0).unwrap().ejected_until, opened + period);
    }

    /// However long the outage, one good probe closes the circuit: the deployment
    /// is back in rotation, and its next outage opens for base again, after the
    /// full count of failures.
    #[test]
    fn one_good_probe_closes_after_any_outage(
        base in 0.01..100.0f64,
        failures in 1..6u32,
        failed_probes in 0..10usize,
        latency in 0.0..2_000.0f64,
    ) {
        let mut p = pool(2, failures, base, base * 8.0, 1e6);
        fail(&mut p, 0, failures, 0.0);
        for _ in 0..=failed_probes {
            let at = p.stats(0).unwrap().ejected_until;
            prop_assert_eq!(p.pick(Strategy::RoundRobin, "", at), Ok(0));
            p.start(0).unwrap();
            p.finish(0, latency, false, at + latency / 1000.0).unwrap();
        }
        let at = p.stats(0).unwrap().ejected_until;
        prop_assert_eq!(p.pick(Strategy::RoundRobin, "", at), Ok(0));
        p.start(0).unwrap();
        let closed_at = at + latency / 1000.0;
        p.finish(0, latency, true, closed_at).unwrap();
        prop_assert_eq!(p.phase(0, closed_at), Ok(CircuitPhase::Closed));
        prop_assert_eq!(p.open_circuits(), 0);
        prop_assert!(p.is_usable(0, closed_at));
        fail(&mut p, 0, failures - 1, closed_at);
        prop_assert_eq!(p.phase(0, closed_at), Ok(CircuitPhase::Closed));
        fail(&mut p, 0, 1, closed_at);
        prop_assert_eq!(p.stats(0).unwrap().ejected_until, closed_at + base);
    }
}
