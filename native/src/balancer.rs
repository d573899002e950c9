//! Load balancing among the deployments of one model.
//!
//! A deployment is usable when it is marked healthy and not ejected. Strategies
//! that compare loads scan from a cursor that moves past each pick, so ties
//! rotate instead of piling onto the first deployment. No strategy allocates.
//!
//! Children: `strategy` (the strategies and their names, a leaf), `error`
//! (lists the names in its message), `outlier` (ejection; reports bad
//! parameters with `error`). None of them uses this file, so the module
//! graph has no cycle.

mod error;
mod outlier;
mod strategy;
#[cfg(test)]
mod tests;

use std::str::FromStr;

pub use error::BalanceError;
pub use outlier::OutlierPolicy;
pub use strategy::Strategy;

use crate::rng::SplitMix64;
use outlier::OutlierState;

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
    /// Monotonic seconds; 0 when never ejected.
    pub ejected_until: f64,
    pub consecutive_failures: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    healthy: bool,
    in_flight: u32,
    latency_ewma_ms: f64,
    has_latency: bool,
    outlier: OutlierState,
}

impl Slot {
    fn usable(&self, now: f64) -> bool {
        self.healthy && !self.outlier.is_ejected(now)
    }

    /// p2c's load: expected wait ∝ latency × queue. The +1 ms keeps the queue
    /// length counting while the latency is unknown (0) or sub-millisecond.
    fn load(&self) -> f64 {
        (self.latency_ewma_ms + 1.0) * (f64::from(self.in_flight) + 1.0)
    }
}

/// The deployments of one model with their load, latency and ejection state.
#[derive(Debug, Clone)]
pub struct DeploymentPool {
    deployments: Vec<Deployment>,
    slots: Vec<Slot>,
    policy: OutlierPolicy,
    ewma_alpha: f64,
    rng: SplitMix64,
    cursor: usize,
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
    /// `RegionAffinity`. Does not count the call: follow with `start`.
    pub fn pick(
        &mut self,
        strategy: Strategy,
        region: &str,
        now: f64,
    ) -> Result<usize, BalanceError> {
        check_time(now)?;
        let picked = match strategy {
            Strategy::RoundRobin => self.first_usable(now),
            Strategy::LeastLoaded => self.min_by(now, |_, s| s.in_flight),
            Strategy::PowerOfTwoChoices => self.power_of_two(now),
            Strategy::CostOptimized => self.min_by(now, |d, s| (d.usd_cost, s.in_flight)),
            Strategy::RegionAffinity => self.region_first(region, now),
        };
        let i = picked.ok_or_else(|| self.none_usable(now))?;
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

    /// Ends a call to `i`: updates the latency EWMA and the failure history, and
    /// ejects `i` when it has failed too often, unless the pool's ejection cap is
    /// reached (it then stays in and is ejected on a later failure if room frees).
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
        let alpha = self.ewma_alpha;
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
        let wants_ejection = self.policy.record(&mut slot.outlier, ok, now);
        if wants_ejection && self.ejected_count(now) < self.policy.max_ejected(self.slots.len()) {
            self.policy.eject(&mut self.slots[i].outlier, now);
        }
        Ok(())
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
            ejected_until: s.outlier.ejected_until(),
            consecutive_failures: s.outlier.consecutive_failures(),
        })
    }

    /// Deployments ejected at `now`.
    pub fn ejected_count(&self, now: f64) -> usize {
        self.slots
            .iter()
            .filter(|s| s.outlier.is_ejected(now))
            .count()
    }

    /// Whether `i` may be picked at `now`.
    pub fn is_usable(&self, i: usize, now: f64) -> bool {
        self.slots.get(i).is_some_and(|s| s.usable(now))
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

    fn first_usable(&self, now: f64) -> Option<usize> {
        self.rotation().find(|&i| self.slots[i].usable(now))
    }

    /// The usable deployment with the smallest key; the first in rotation on ties.
    fn min_by<K: PartialOrd>(
        &self,
        now: f64,
        key: impl Fn(&Deployment, &Slot) -> K,
    ) -> Option<usize> {
        self.min_among(now, |_| true, key)
    }

    fn min_among<K: PartialOrd>(
        &self,
        now: f64,
        admit: impl Fn(&Deployment) -> bool,
        key: impl Fn(&Deployment, &Slot) -> K,
    ) -> Option<usize> {
        let mut best: Option<(usize, K)> = None;
        for i in self.rotation() {
            let (d, s) = (&self.deployments[i], &self.slots[i]);
            if !s.usable(now) || !admit(d) {
                continue;
            }
            let k = key(d, s);
            if best.as_ref().is_none_or(|(_, b)| k < *b) {
                best = Some((i, k));
            }
        }
        best.map(|(i, _)| i)
    }

    fn region_first(&self, region: &str, now: f64) -> Option<usize> {
        let load = |_: &Deployment, s: &Slot| s.in_flight;
        self.min_among(now, |d| d.region == region, load)
            .or_else(|| self.min_by(now, load))
    }

    fn power_of_two(&mut self, now: f64) -> Option<usize> {
        let a = self.random_usable(now, None)?;
        let Some(b) = self.random_usable(now, Some(a)) else {
            return Some(a);
        };
        let (la, lb) = (self.slots[a].load(), self.slots[b].load());
        Some(if lb < la { b } else { a })
    }

    /// A uniformly random usable deployment other than `except`. A few blind draws
    /// first (most of a pool is usable: ejection is capped), then an exact draw
    /// among the usable ones; both are uniform, so the mixture is too.
    fn random_usable(&mut self, now: f64, except: Option<usize>) -> Option<usize> {
        let n = self.slots.len();
        let eligible = |slots: &[Slot], i: usize| Some(i) != except && slots[i].usable(now);
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

    fn none_usable(&self, now: f64) -> BalanceError {
        let unhealthy = self.slots.iter().filter(|s| !s.healthy).count();
        let ejected = self
            .slots
            .iter()
            .filter(|s| s.healthy && s.outlier.is_ejected(now))
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
