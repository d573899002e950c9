//! Load balancing among the deployments of one model.
//!
//! A deployment is in rotation when it is marked healthy and its circuit is
//! closed. Strategies that compare loads scan from a cursor that moves past each
//! pick, so ties rotate instead of piling onto the first deployment. No strategy
//! allocates. Before any strategy, a pick hands out a probe to a healthy
//! deployment whose open period is over (`circuit`), so a recovered deployment
//! is tried at the first pick after its period whatever the strategy would
//! prefer; the check costs one comparison while every circuit is closed.
//!
//! Children: `strategy` (the strategies and their names, a leaf), `error`
//! (lists the names in its message), `outlier` (the policy; reports bad
//! parameters with `error`), `circuit` (one deployment's state machine, over
//! the policy). None of them uses this file, so the module graph has no cycle.

mod circuit;
mod error;
mod outlier;
mod strategy;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_circuit;

use std::str::FromStr;

pub use circuit::CircuitPhase;
pub use error::BalanceError;
pub use outlier::OutlierPolicy;
pub use strategy::Strategy;

use crate::rng::SplitMix64;
use circuit::Circuit;

/// Here rather than beside `Strategy`: the error is the balancer's, and its
/// message lists the strategies, so `strategy` stays a leaf.
impl FromStr for Strategy {
    type Err = BalanceError;

    fn from_str(name: &str) -> Result<Self, BalanceError> {
        Self::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| BalanceError::UnknownStrategy(name.to_owned()))
    }
}

/// Where a deployment is and what a call to it costs.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub endpoint: String,
    pub region: String,
    pub usd_cost: f64,
}

/// Live figures of one deployment.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DeploymentStats {
    pub in_flight: u32,
    /// 0 until the first completed call.
    pub latency_ewma_ms: f64,
    /// End of the latest open period (monotonic seconds); 0 when never opened.
    pub ejected_until: f64,
    pub consecutive_failures: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    healthy: bool,
    in_flight: u32,
    latency_ewma_ms: f64,
    has_latency: bool,
    circuit: Circuit,
}

impl Slot {
    /// In rotation: what strategies choose among.
    fn usable(&self) -> bool {
        self.healthy && self.circuit.is_closed()
    }

    /// p2c's load: expected wait ∝ latency × queue. The +1 ms keeps the queue
    /// length counting while the latency is unknown (0) or sub-millisecond.
    fn load(&self) -> f64 {
        (self.latency_ewma_ms + 1.0) * (f64::from(self.in_flight) + 1.0)
    }
}

/// The deployments of one model with their load, latency and circuits.
#[derive(Debug, Clone)]
pub struct DeploymentPool {
    deployments: Vec<Deployment>,
    slots: Vec<Slot>,
    policy: OutlierPolicy,
    ewma_alpha: f64,
    rng: SplitMix64,
    cursor: usize,
    /// Slots whose circuit is not closed, so a pick of a healthy pool skips the
    /// probe scan.
    open_circuits: usize,
}

impl DeploymentPool {
    /// All healthy, idle and in rotation. Costs finite and >= 0, `ewma_alpha` in (0, 1].
    pub fn new(
        deployments: Vec<Deployment>,
        policy: OutlierPolicy,
        ewma_alpha: f64,
        seed: u64,
    ) -> Result<Self, BalanceError> {
        if deployments.is_empty() {
            return Err(BalanceError::NoDeployments);
        }
        if !(ewma_alpha > 0.0 && ewma_alpha <= 1.0) {
            return Err(BalanceError::InvalidParameter {
                name: "ewma_alpha",
                expected: "a number in (0, 1]",
                value: ewma_alpha,
            });
        }
        if let Some(d) = deployments
            .iter()
            .find(|d| !(d.usd_cost.is_finite() && d.usd_cost >= 0.0))
        {
            return Err(BalanceError::InvalidParameter {
                name: "usd_cost",
                expected: "a finite number >= 0",
                value: d.usd_cost,
            });
        }
        let slot = Slot {
            healthy: true,
            ..Slot::default()
        };
        Ok(Self {
            slots: vec![slot; deployments.len()],
            deployments,
            policy,
            ewma_alpha,
            rng: SplitMix64::new(seed),
            cursor: 0,
            open_circuits: 0,
        })
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn deployment(&self, i: usize) -> Result<&Deployment, BalanceError> {
        self.check(i)?;
        Ok(&self.deployments[i])
    }

    /// The index of the deployment to call at `now`; `region` matters only to
    /// `RegionAffinity`. A healthy deployment waiting for its probe comes first,
    /// and that pick is its one probe. Does not count the call: follow with `start`.
    pub fn pick(
        &mut self,
        strategy: Strategy,
        region: &str,
        now: f64,
    ) -> Result<usize, BalanceError> {
        check_time(now)?;
        if self.open_circuits > 0 {
            if let Some(i) = self.probe_due(now) {
                self.slots[i].circuit.claim_probe(&self.policy, now);
                return Ok(i);
            }
        }
        let picked = match strategy {
            Strategy::RoundRobin => self.first_usable(),
            Strategy::LeastLoaded => self.min_by(|_, s| s.in_flight),
            Strategy::PowerOfTwoChoices => self.power_of_two(),
            Strategy::CostOptimized => self.min_by(|d, s| (d.usd_cost, s.in_flight)),
            Strategy::RegionAffinity => self.region_first(region),
        };
        let i = picked.ok_or_else(|| self.none_usable())?;
        self.cursor = (i + 1) % self.slots.len();
        Ok(i)
    }

    /// Counts a call to `i` as in flight.
    pub fn start(&mut self, i: usize) -> Result<(), BalanceError> {
        self.check(i)?;
        let slot = &mut self.slots[i];
        slot.in_flight = slot.in_flight.saturating_add(1);
        Ok(())
    }

    /// Ends a call to `i` that took `latency_ms`: updates the latency EWMA and the
    /// circuit. A closed circuit opens when `i` has failed too often, unless the
    /// pool's cap on open circuits is reached (it then stays in and opens on a
    /// later failure if room frees); a probe's finish closes or reopens it.
    /// A finish without a start never takes `in_flight` below 0.
    pub fn finish(
        &mut self,
        i: usize,
        latency_ms: f64,
        ok: bool,
        now: f64,
    ) -> Result<(), BalanceError> {
        self.check(i)?;
        if !(latency_ms.is_finite() && latency_ms >= 0.0) {
            return Err(BalanceError::InvalidParameter {
                name: "latency_ms",
                expected: "a finite number >= 0",
                value: latency_ms,
            });
        }
        check_time(now)?;
        let (alpha, policy) = (self.ewma_alpha, self.policy);
        let slot = &mut self.slots[i];
        slot.in_flight = slot.in_flight.saturating_sub(1);
        // A failure may only raise the EWMA: errors that fail fast must not make a
        // broken deployment look fast and attract more traffic.
        let sample = if ok {
            latency_ms
        } else {
            latency_ms.max(slot.latency_ewma_ms)
        };
        slot.latency_ewma_ms = if slot.has_latency {
            alpha * sample + (1.0 - alpha) * slot.latency_ewma_ms
        } else {
            sample
        };
        slot.has_latency = true;
        let was_closed = slot.circuit.is_closed();
        let started = now - latency_ms / 1000.0;
        let wants_open = slot.circuit.record(&policy, ok, started, now);
        if wants_open && self.open_circuits < policy.max_ejected(self.slots.len()) {
            self.slots[i].circuit.open(&policy, now);
        }
        match (was_closed, self.slots[i].circuit.is_closed()) {
            (true, false) => self.open_circuits += 1,
            (false, true) => self.open_circuits -= 1,
            _ => {}
        }
        Ok(())
    }

    /// Opens `i`'s closed circuit at `now`, as enough failures in a row would: for a
    /// rule the caller keeps (the gateway's live failure rate over its window). The
    /// same open period, probe and backoff follow, within the same cap on open
    /// circuits. Whether it opened (false: not closed, or the cap is reached).
    pub fn trip(&mut self, i: usize, now: f64) -> Result<bool, BalanceError> {
        self.check(i)?;
        check_time(now)?;
        let policy = self.policy;
        let cap = policy.max_ejected(self.slots.len());
        let circuit = &mut self.slots[i].circuit;
        if !circuit.is_closed() || self.open_circuits >= cap {
            return Ok(false);
        }
        circuit.open(&policy, now);
        self.open_circuits += 1;
        Ok(true)
    }

    /// Marks `i` healthy or not (from health checks); unhealthy ones are never picked.
    pub fn set_healthy(&mut self, i: usize, healthy: bool) -> Result<(), BalanceError> {
        self.check(i)?;
        self.slots[i].healthy = healthy;
        Ok(())
    }

    pub fn stats(&self, i: usize) -> Result<DeploymentStats, BalanceError> {
        self.check(i)?;
        let s = &self.slots[i];
        Ok(DeploymentStats {
            in_flight: s.in_flight,
            latency_ewma_ms: s.latency_ewma_ms,
            ejected_until: s.circuit.ejected_until(),
            consecutive_failures: s.circuit.consecutive_failures(),
        })
    }

    /// Where `i`'s circuit stands at `now`.
    pub fn phase(&self, i: usize, now: f64) -> Result<CircuitPhase, BalanceError> {
        self.check(i)?;
        check_time(now)?;
        Ok(self.slots[i].circuit.phase(&self.policy, now))
    }

    /// Deployments whose circuit is not closed (open or half-open): what the
    /// policy's `max_ejected` caps.
    pub fn open_circuits(&self) -> usize {
        self.open_circuits
    }

    /// Whether `i` may be picked at `now`: in rotation, or due its probe.
    pub fn is_usable(&self, i: usize, now: f64) -> bool {
        self.slots
            .get(i)
            .is_some_and(|s| s.usable() || (s.healthy && s.circuit.awaits_probe(&self.policy, now)))
    }

    fn check(&self, i: usize) -> Result<(), BalanceError> {
        if i < self.slots.len() {
            Ok(())
        } else {
            Err(BalanceError::IndexOutOfRange {
                index: i64::try_from(i).unwrap_or(i64::MAX),
                len: self.slots.len(),
            })
        }
    }

    /// Indices from the cursor round to just before it.
    fn rotation(&self) -> impl Iterator<Item = usize> {
        let (n, start) = (self.slots.len(), self.cursor);
        (0..n).map(move |k| (start + k) % n)
    }

    /// The first healthy deployment in rotation order whose circuit waits for a probe.
    fn probe_due(&self, now: f64) -> Option<usize> {
        self.rotation().find(|&i| {
            let s = &self.slots[i];
            s.healthy && s.circuit.awaits_probe(&self.policy, now)
        })
    }

    fn first_usable(&self) -> Option<usize> {
        self.rotation().find(|&i| self.slots[i].usable())
    }

    /// The usable deployment with the smallest key; the first in rotation on ties.
    fn min_by<K: PartialOrd>(&self, key: impl Fn(&Deployment, &Slot) -> K) -> Option<usize> {
        self.min_among(|_| true, key)
    }

    fn min_among<K: PartialOrd>(
        &self,
        admit: impl Fn(&Deployment) -> bool,
        key: impl Fn(&Deployment, &Slot) -> K,
    ) -> Option<usize> {
        let mut best: Option<(usize, K)> = None;
        for i in self.rotation() {
            let (d, s) = (&self.deployments[i], &self.slots[i]);
            if !s.usable() || !admit(d) {
                continue;
            }
            let k = key(d, s);
            if best.as_ref().is_none_or(|(_, b)| k < *b) {
                best = Some((i, k));
            }
        }
        best.map(|(i, _)| i)
    }

    fn region_first(&self, region: &str) -> Option<usize> {
        let load = |_: &Deployment, s: &Slot| s.in_flight;
        self.min_among(|d| d.region == region, load)
            .or_else(|| self.min_by(load))
    }

    fn power_of_two(&mut self) -> Option<usize> {
        let a = self.random_usable(None)?;
        let Some(b) = self.random_usable(Some(a)) else {
            return Some(a);
        };
        let (la, lb) = (self.slots[a].load(), self.slots[b].load());
        Some(if lb < la { b } else { a })
    }

    /// A uniformly random usable deployment other than `except`. A few blind draws
    /// first (most of a pool is usable: ejection is capped), then an exact draw
    /// among the usable ones; both are uniform, so the mixture is too.
    fn random_usable(&mut self, except: Option<usize>) -> Option<usize> {
        let n = self.slots.len();
        let eligible = |slots: &[Slot], i: usize| Some(i) != except && slots[i].usable();
        for _ in 0..4 {
            let i = self.rng.below(n);
            if eligible(&self.slots, i) {
                return Some(i);
            }
        }
        let count = (0..n).filter(|&i| eligible(&self.slots, i)).count();
        if count == 0 {
            return None;
        }
        let k = self.rng.below(count);
        (0..n).filter(|&i| eligible(&self.slots, i)).nth(k)
    }

    /// Called when no probe was due, so every healthy deployment out of rotation
    /// is open or has its probe out: both count as ejected.
    fn none_usable(&self) -> BalanceError {
        let unhealthy = self.slots.iter().filter(|s| !s.healthy).count();
        let ejected = self
            .slots
            .iter()
            .filter(|s| s.healthy && !s.circuit.is_closed())
            .count();
        BalanceError::NoneUsable {
            total: self.slots.len(),
            unhealthy,
            ejected,
        }
    }
}

fn check_time(now: f64) -> Result<(), BalanceError> {
    if now.is_finite() {
        Ok(())
    } else {
        Err(BalanceError::InvalidParameter {
            name: "now",
            expected: "a finite number",
            value: now,
        })
    }
}
