//! Unit and property tests of the deployment pool.

use proptest::prelude::*;
use proptest::strategy::Strategy as Generator;

use super::*;
// `super::Strategy` (the balancing strategy) shadows proptest's glob-imported trait.
use super::Strategy;

fn pool(n: usize, failures: u32, share: f64) -> DeploymentPool {
    let deployments = (0..n)
        .map(|i| Deployment {
            endpoint: format!("host{i}:50051"),
            region: if i % 2 == 0 { "eu" } else { "us" }.to_owned(),
            usd_cost: (n - i) as f64,
        })
        .collect();
    let policy = OutlierPolicy::new(failures, 30.0, 300.0, 60.0, share).unwrap();
    DeploymentPool::new(deployments, policy, 0.5, 42).unwrap()
}

#[test]
fn round_robin_cycles_and_skips_unusable() {
    let mut p = pool(3, 5, 0.5);
    let picks: Vec<usize> = (0..4)
        .map(|_| p.pick(Strategy::RoundRobin, "", 0.0).unwrap())
        .collect();
    assert_eq!(picks, vec![0, 1, 2, 0]);
    p.set_healthy(2, false).unwrap();
    let picks: Vec<usize> = (0..3)
        .map(|_| p.pick(Strategy::RoundRobin, "", 0.0).unwrap())
        .collect();
    assert_eq!(picks, vec![1, 0, 1]);
}

#[test]
fn least_loaded_prefers_idle_and_rotates_ties() {
    let mut p = pool(3, 5, 0.5);
    p.start(0).unwrap();
    p.start(1).unwrap();
    assert_eq!(p.pick(Strategy::LeastLoaded, "", 0.0), Ok(2));
    p.start(2).unwrap();
    // All at one in flight: ties rotate from the cursor.
    assert_eq!(p.pick(Strategy::LeastLoaded, "", 0.0), Ok(0));
    assert_eq!(p.pick(Strategy::LeastLoaded, "", 0.0), Ok(1));
}

#[test]
fn cost_optimized_takes_the_cheapest_then_the_least_loaded() {
    let mut p = pool(3, 5, 0.5);
    assert_eq!(p.pick(Strategy::CostOptimized, "", 0.0), Ok(2));
    p.set_healthy(2, false).unwrap();
    assert_eq!(p.pick(Strategy::CostOptimized, "", 0.0), Ok(1));
}

#[test]
fn region_affinity_stays_home_until_home_is_gone() {
    let mut p = pool(4, 5, 0.5);
    p.start(1).unwrap();
    assert_eq!(p.pick(Strategy::RegionAffinity, "us", 0.0), Ok(3));
    p.set_healthy(1, false).unwrap();
    p.set_healthy(3, false).unwrap();
    let elsewhere = p.pick(Strategy::RegionAffinity, "us", 0.0).unwrap();
    assert!(elsewhere == 0 || elsewhere == 2);
    assert!(p.pick(Strategy::RegionAffinity, "", 0.0).is_ok());
}

#[test]
fn p2c_avoids_the_slow_and_busy() {
    let mut p = pool(2, 5, 0.5);
    p.start(0).unwrap();
    p.finish(0, 500.0, true, 0.0).unwrap();
    p.start(1).unwrap();
    p.finish(1, 10.0, true, 0.0).unwrap();
    for _ in 0..100 {
        assert_eq!(p.pick(Strategy::PowerOfTwoChoices, "", 0.0), Ok(1));
    }
}

#[test]
fn ejects_after_n_failures_then_is_due_a_probe() {
    let mut p = pool(4, 3, 0.5);
    for _ in 0..3 {
        p.start(0).unwrap();
        p.finish(0, 5.0, false, 100.0).unwrap();
    }
    let stats = p.stats(0).unwrap();
    assert_eq!(stats.ejected_until, 130.0);
    assert_eq!(stats.in_flight, 0);
    assert!(!p.is_usable(0, 129.0));
    assert!(p.is_usable(0, 130.0));
}

#[test]
fn the_ejection_cap_keeps_deployments_in() {
    let mut p = pool(4, 1, 0.5);
    for i in 0..4 {
        p.finish(i, 1.0, false, 0.0).unwrap();
    }
    assert_eq!(p.open_circuits(), 2);
    assert_eq!(p.stats(2).unwrap().consecutive_failures, 1);
    // Deployment 0's probe succeeds at 30 s: room frees, and 2, still failing,
    // opens at its next failure.
    assert_eq!(p.pick(Strategy::RoundRobin, "", 30.0), Ok(0));
    p.finish(0, 1.0, true, 31.0).unwrap();
    p.finish(2, 1.0, false, 31.0).unwrap();
    assert!(!p.is_usable(2, 31.0));
    assert_eq!(p.open_circuits(), 2);
}

#[test]
fn a_failure_only_raises_the_latency_ewma() {
    let mut p = pool(1, 5, 0.5);
    p.finish(0, 100.0, true, 0.0).unwrap();
    p.finish(0, 1.0, false, 0.0).unwrap();
    assert_eq!(p.stats(0).unwrap().latency_ewma_ms, 100.0);
    p.finish(0, 300.0, false, 0.0).unwrap();
    assert_eq!(p.stats(0).unwrap().latency_ewma_ms, 200.0);
    p.finish(0, 0.0, true, 0.0).unwrap();
    assert_eq!(p.stats(0).unwrap().latency_ewma_ms, 100.0);
}

#[test]
fn every_strategy_parses_from_its_name() {
    for strategy in Strategy::ALL {
        assert_eq!(strategy.name().parse::<Strategy>(), Ok(strategy));
    }
    assert_eq!(
        "P2C".parse::<Strategy>(),
        Err(BalanceError::UnknownStrategy("P2C".to_owned()))
    );
}

#[test]
fn errors_name_what_is_wrong() {
    let mut p = pool(2, 1, 0.5);
    assert_eq!(
        "random".parse::<Strategy>().unwrap_err().to_string(),
        "unknown strategy 'random'; valid: round_robin, least_loaded, p2c, cost_optimized, region_affinity"
    );
    assert_eq!(
        p.start(2).unwrap_err().to_string(),
        "deployment index 2 is out of range for a pool of 2"
    );
    assert!(p.finish(0, f64::NAN, true, 0.0).is_err());
    assert!(p.pick(Strategy::RoundRobin, "", f64::NAN).is_err());
    p.set_healthy(1, false).unwrap();
    p.finish(0, 1.0, false, 0.0).unwrap();
    assert_eq!(
        p.pick(Strategy::LeastLoaded, "", 0.0)
            .unwrap_err()
            .to_string(),
        "no usable deployment among 2: 1 unhealthy, 1 ejected"
    );
    let policy = OutlierPolicy::new(1, 1.0, 1.0, 1.0, 0.5).unwrap();
    assert_eq!(
        DeploymentPool::new(vec![], policy, 0.3, 0).unwrap_err(),
        BalanceError::NoDeployments
    );
    let bad = Deployment {
        endpoint: "x".into(),
        region: String::new(),
        usd_cost: -1.0,
    };
    assert!(DeploymentPool::new(vec![bad.clone()], policy, 0.3, 0).is_err());
    assert!(DeploymentPool::new(vec![bad], policy, 0.0, 0).is_err());
}

/// One thing that can happen to a pool.
#[derive(Debug, Clone)]
enum Op {
    Pick(usize),
    Finish { i: usize, ok: bool, latency: f64 },
    Health { i: usize, healthy: bool },
    Wait(f64),
}

fn ops(n: usize) -> impl Generator<Value = Vec<Op>> {
    let op = prop_oneof![
        4 => (0..Strategy::ALL.len()).prop_map(Op::Pick),
        4 => (0..n, prop::bool::weighted(0.3), 0.0..500.0f64)
            .prop_map(|(i, ok, latency)| Op::Finish { i, ok, latency }),
        1 => (0..n, prop::bool::weighted(0.8)).prop_map(|(i, healthy)| Op::Health { i, healthy }),
        1 => (0.0..60.0f64).prop_map(Op::Wait),
    ];
    prop::collection::vec(op, 1..300)
}

proptest! {
    /// Whatever happens: open circuits never exceed the cap (and the pool's count
    /// of them is exact), a pick is always usable, a probe is handed out once,
    /// and a pick fails only when nothing is usable.
    #[test]
    fn picks_are_usable_and_ejection_is_capped(
        (n, share, failures, ops) in (1..12usize).prop_flat_map(|n| {
            (Just(n), 0.0..=1.0f64, 1..4u32, ops(n))
        }),
    ) {
        let mut p = pool(n, failures, share);
        let cap = p.policy.max_ejected(n);
        let mut now = 0.0;
        for op in ops {
            match op {
                Op::Pick(s) => {
                    let strategy = Strategy::ALL[s];
                    let usable: Vec<bool> = (0..n).map(|i| p.is_usable(i, now)).collect();
                    match p.pick(strategy, "eu", now) {
                        Ok(i) => {
                            prop_assert!(usable[i], "{strategy:?} picked unusable {i}");
                            if p.phase(i, now) != Ok(CircuitPhase::Closed) {
                                // A probe: the only one, so no other pick gets it.
                                prop_assert!(!p.is_usable(i, now), "probe {i} still usable");
                            }
                            p.start(i).unwrap();
                        }
                        Err(BalanceError::NoneUsable { .. }) => {
                            prop_assert!(usable.iter().all(|u| !u));
                        }
                        Err(other) => prop_assert!(false, "unexpected {other}"),
                    }
                }
                Op::Finish { i, ok, latency } => p.finish(i, latency, ok, now).unwrap(),
                Op::Health { i, healthy } => p.set_healthy(i, healthy).unwrap(),
                Op::Wait(dt) => now += dt,
            }
            let open = (0..n).filter(|&i| p.phase(i, now) != Ok(CircuitPhase::Closed)).count();
            prop_assert_eq!(open, p.open_circuits());
            prop_assert!(open <= cap, "{open} > cap {cap}");
        }
    }
}

/// Kills `*` → `+` / `/` in `Slot::load`: p2c's load is latency × queue, so a
/// fast deployment with a queue can lose to a slower idle one.
#[test]
fn p2c_weighs_latency_by_queue_length() {
    let mut p = pool(2, 5, 0.5);
    // Deployment 0: 9 ms and 3 in flight, load (9 + 1) × 4 = 40.
    // Deployment 1: 29 ms and idle, load (29 + 1) × 1 = 30.
    p.finish(0, 9.0, true, 0.0).unwrap();
    p.finish(1, 29.0, true, 0.0).unwrap();
    for _ in 0..3 {
        p.start(0).unwrap();
    }
    for _ in 0..100 {
        assert_eq!(p.pick(Strategy::PowerOfTwoChoices, "", 0.0), Ok(1));
    }
}

/// Kills `+` → `-` / `*` in `Slot::load`: before any latency is known the +1 ms
/// keeps the queue counting, so p2c still prefers the shorter queue.
#[test]
fn p2c_counts_the_queue_while_latency_is_unknown() {
    let mut p = pool(2, 5, 0.5);
    for _ in 0..3 {
        p.start(0).unwrap();
    }
    for _ in 0..100 {
        assert_eq!(p.pick(Strategy::PowerOfTwoChoices, "", 0.0), Ok(1));
    }
}

/// Kills `DeploymentPool::is_empty` → `true`. (`false` is equivalent: `new`
/// refuses an empty pool, so a pool is never empty.)
#[test]
fn a_pool_holds_its_deployments() {
    let p = pool(3, 5, 0.5);
    assert_eq!((p.len(), p.is_empty()), (3, false));
}

/// Kills `&&` → `||` in `finish`'s latency check: a negative or infinite latency
/// is refused and changes nothing.
#[test]
fn finish_refuses_negative_and_infinite_latencies() {
    let mut p = pool(1, 5, 0.5);
    p.start(0).unwrap();
    for bad in [-1.0, f64::INFINITY, f64::NAN] {
        assert!(
            matches!(
                p.finish(0, bad, true, 0.0),
                Err(BalanceError::InvalidParameter {
                    name: "latency_ms",
                    ..
                })
            ),
            "{bad}"
        );
    }
    assert_eq!(p.stats(0).unwrap().in_flight, 1);
}

/// Kills `delete !` and `&&` → `||` in `none_usable`: a deployment that is both
/// unhealthy and ejected counts once, as unhealthy.
#[test]
fn an_unhealthy_ejected_deployment_counts_as_unhealthy_only() {
    let mut p = pool(3, 1, 1.0);
    p.finish(0, 1.0, false, 0.0).unwrap();
    p.finish(1, 1.0, false, 0.0).unwrap();
    p.set_healthy(0, false).unwrap();
    p.set_healthy(2, false).unwrap();
    assert_eq!(
        p.pick(Strategy::RoundRobin, "", 1.0),
        Err(BalanceError::NoneUsable {
            total: 3,
            unhealthy: 2,
            ejected: 1,
        })
    );
}
