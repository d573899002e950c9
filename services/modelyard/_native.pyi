"""Type stub for `modelyard._native`, the compiled core (native/): token buckets,
model selection, load balancing among deployments, A/B traffic split.

Every `now` is monotonic seconds; pass `None` to use the process-wide monotonic
clock. Bad arguments raise `modelyard_client.errors.InvalidRequest`; a pool with no
usable deployment raises `modelyard_client.errors.BackendUnavailable`.
"""

from collections.abc import Sequence
from typing import Literal, final

__all__ = [
    "STRATEGIES",
    "Candidate",
    "CandidateScore",
    "CandidateSet",
    "Constraints",
    "DeploymentPool",
    "Selection",
    "SharedLimits",
    "TokenBucket",
    "Weights",
    "assign_arm",
]

@final
class TokenBucket:
    """Holds up to `capacity` units and refills at `refill_per_second`; starts full."""

    def __new__(cls, capacity: float, refill_per_second: float) -> TokenBucket: ...
    def try_take(self, amount: float, now: float | None = None) -> float:
        """Take `amount` and return 0.0, or take nothing and return the seconds to wait.

        The wait is `inf` when the bucket never refills.
        """

    def give_back(self, amount: float, now: float | None = None) -> None:
        """Return `amount` to the bucket, never beyond capacity."""

    def available(self, now: float | None = None) -> float:
        """Units available at `now`."""

    @property
    def capacity(self) -> float: ...
    @property
    def refill_per_second(self) -> float: ...

@final
class SharedLimits:
    """Token buckets and spend counters in a file every process on the host maps.

    One lock word guards the table, so a request's buckets and budgets change together
    for every process; a holder that dies is taken over. A demand is (key, amount,
    capacity, refill per second); a charge is (key, nano-dollars, budget nano-dollars,
    window begins, window resets), the window in Unix seconds. `now` is the host's
    monotonic clock (`time.monotonic()`), the default.

    Raises InvalidRequest for a file that cannot be mapped or holds another layout,
    BackendUnavailable when every slot of a kind holds a live bucket or counter.
    """

    def __new__(
        cls, path: str, bucket_slots: int = 65536, counter_slots: int = 65536
    ) -> SharedLimits: ...
    def take(
        self,
        demands: list[tuple[str, float, float, float]],
        now: float | None = None,
        keep: bool = True,
    ) -> list[float]:
        """Take every demand or none: each one's wait (0.0: it could be taken).

        `keep=False` judges without taking.
        """

    def give_back(
        self, demands: list[tuple[str, float, float, float]], now: float | None = None
    ) -> None:
        """Return unused amounts to buckets still built with the same limits."""

    def available(
        self, key: str, capacity: float, refill_per_second: float, now: float | None = None
    ) -> float:
        """What a bucket holds at `now` (its capacity before its first use)."""

    def reserve(
        self,
        demands: list[tuple[str, float, float, float]],
        charges: list[tuple[str, int, int, float, float]],
        now: float | None = None,
    ) -> tuple[bool, list[float], list[int], list[int]]:
        """Take the demands and add the charges, all or nothing.

        Returns (admitted, waits, each counter before, each counter after).
        """

    def add(self, charges: list[tuple[str, int, int, float, float]]) -> list[int]:
        """Add the charges (refunds never below 0): each counter after."""

    def spent(self, key: str) -> int:
        """Nano-dollars a budget window's counter holds; 0 before use."""

    def mark_told(self, key: str, reached: int) -> int:
        """Mark alert fractions up to `reached` told: how many were told before."""

    @property
    def path(self) -> str: ...

@final
class Candidate:
    """One model as selection sees it.

    `capabilities` and `modalities` are bitmasks: bit i is value i of the
    `modelyard.v1.Capability` / `Modality` enum. 0 means unknown for
    `context_window`, `latency_ms` (p50), `tokens_per_second` and `memory_bytes`;
    an unknown metric passes its hard constraint and scores a neutral 0.5.
    Float metrics must be finite and >= 0 and `reliability` and `quality` (an
    evaluation suite's score; 0: never evaluated) within [0, 1], else
    InvalidRequest naming the model and the field.
    """

    def __new__(
        cls,
        model_id: str,
        *,
        capabilities: int = 0,
        modalities: int = 0,
        context_window: int = 0,
        latency_ms: float = 0.0,
        tokens_per_second: float = 0.0,
        usd_per_input_token: float = 0.0,
        usd_per_output_token: float = 0.0,
        usd_per_request: float = 0.0,
        reliability: float = 1.0,
        quality: float = 0.0,
        memory_bytes: int = 0,
        backend: str = "",
        region: str = "",
        healthy: bool = True,
    ) -> Candidate: ...
    @property
    def model_id(self) -> str: ...
    @property
    def capabilities(self) -> int: ...
    @property
    def modalities(self) -> int: ...
    @property
    def context_window(self) -> int: ...
    @property
    def latency_ms(self) -> float: ...
    @property
    def tokens_per_second(self) -> float: ...
    @property
    def usd_per_input_token(self) -> float: ...
    @property
    def usd_per_output_token(self) -> float: ...
    @property
    def usd_per_request(self) -> float: ...
    @property
    def reliability(self) -> float: ...
    @property
    def quality(self) -> float: ...
    @property
    def memory_bytes(self) -> int: ...
    @property
    def backend(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def healthy(self) -> bool: ...

@final
class Constraints:
    """Hard constraints of one request; 0 / "" / empty means no constraint.

    The estimated cost of a request on a candidate is prompt_tokens x input price
    + max_output_tokens x output price + per-request price. `preferred_backend` is
    hard: only candidates of that backend are eligible.
    """

    def __new__(
        cls,
        *,
        required_capabilities: int = 0,
        input_modality: int = 0,
        prompt_tokens: int = 0,
        max_output_tokens: int = 0,
        max_latency_ms: float = 0.0,
        max_cost_usd: float = 0.0,
        min_reliability: float = 0.0,
        preferred_backend: str = "",
        excluded_models: Sequence[str] = ...,
        max_memory_bytes: int = 0,
        require_healthy: bool = True,
    ) -> Constraints: ...
    @property
    def required_capabilities(self) -> int: ...
    @property
    def input_modality(self) -> int: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def max_output_tokens(self) -> int: ...
    @property
    def max_latency_ms(self) -> float: ...
    @property
    def max_cost_usd(self) -> float: ...
    @property
    def min_reliability(self) -> float: ...
    @property
    def preferred_backend(self) -> str: ...
    @property
    def excluded_models(self) -> list[str]: ...
    @property
    def max_memory_bytes(self) -> int: ...
    @property
    def require_healthy(self) -> bool: ...

@final
class Weights:
    """Criterion weights, each finite and >= 0, not all zero; read back normalised
    to sum to 1."""

    def __new__(
        cls,
        performance: float = 1.0,
        cost: float = 1.0,
        reliability: float = 1.0,
        capabilities: float = 1.0,
    ) -> Weights: ...
    @property
    def performance(self) -> float: ...
    @property
    def cost(self) -> float: ...
    @property
    def reliability(self) -> float: ...
    @property
    def capabilities(self) -> float: ...

@final
class CandidateSet:
    """Candidates validated once (InvalidRequest "no candidates" when empty) and
    scored by any number of `select` calls."""

    def __new__(cls, candidates: Sequence[Candidate]) -> CandidateSet: ...
    def select(self, constraints: Constraints, weights: Weights) -> Selection:
        """Drop candidates that violate a hard constraint, score the rest on four
        criteria normalised across the eligible ones, and pick the best total;
        ties go to the lower estimated cost, then the lower model_id, then index.

        Criteria (each 0..1): performance = mean of (lowest latency / latency) and
        (tokens/s / highest tokens/s); cost = estimated cost mapped from cheapest
        (1) to dearest (0); reliability = the candidate's own; capabilities =
        capabilities beyond the required ones relative to the candidate with most.
        """

    def __len__(self) -> int: ...
    def __getitem__(self, index: int, /) -> Candidate: ...

@final
class Selection:
    """Every candidate's outcome, in candidate order; entries are built on access."""

    @property
    def chosen(self) -> int | None:
        """Index of the best eligible candidate; None when none is eligible."""

    def ranked(self) -> list[int]:
        """Eligible indices, best first (the order a fallback chain should try)."""

    def scores(self) -> list[CandidateScore]:
        """Every candidate's score, in candidate order."""

    def __len__(self) -> int: ...
    def __getitem__(self, index: int, /) -> CandidateScore:
        """Raises IndexError out of range (so `for score in selection` works)."""

@final
class CandidateScore:
    """One candidate's outcome. Criteria and total are 0 when not eligible."""

    @property
    def index(self) -> int: ...
    @property
    def model_id(self) -> str: ...
    @property
    def eligible(self) -> bool: ...
    @property
    def total(self) -> float: ...
    @property
    def performance(self) -> float: ...
    @property
    def cost(self) -> float: ...
    @property
    def reliability(self) -> float: ...
    @property
    def capabilities(self) -> float: ...
    @property
    def criteria(self) -> tuple[float, float, float, float]:
        """(performance, cost, reliability, capabilities)."""

    @property
    def estimated_cost_usd(self) -> float: ...
    @property
    def rejection(self) -> str:
        """Every violated constraint with its values, "; "-separated ("" when
        eligible), e.g. "context window 2048 < prompt 3000 + max_output 256 tokens"
        or "missing capabilities: vision, tools" (Capability names from
        common.proto, lower case without the prefix)."""

STRATEGIES: tuple[str, ...]
"""Every strategy name `DeploymentPool.pick` accepts, in documentation order."""

@final
class DeploymentPool:
    """The deployments of one model, given as (endpoint, region, usd_cost).

    Each deployment has a circuit (`state`). Closed: in rotation while healthy.
    After `consecutive_failures` failures in a row it opens for base_ejection_s;
    when that is over it is half-open, and the next pick (whatever the strategy)
    takes it as the one probe, no other pick getting it meanwhile. The probe's
    `finish` decides: ok closes it (failures and period back to base); a failure
    opens it again for twice the last period, at most max_ejection_s; a probe
    with no finish within probe_timeout_s counts as failed. The probe's finish
    is told apart by its latency: only a call begun after the circuit opened can
    be it, and older calls' outcomes are ignored while it is not closed. At most
    floor(max_ejected_share x pool size) circuits are out of closed at once
    (beyond that a failing deployment stays in). Thread-safe.
    """

    def __new__(
        cls,
        deployments: Sequence[tuple[str, str, float]],
        *,
        consecutive_failures: int = 5,
        base_ejection_s: float = 30.0,
        max_ejection_s: float = 30.0,
        probe_timeout_s: float = 60.0,
        max_ejected_share: float = 0.5,
        ewma_alpha: float = 0.3,
        seed: int = 0,
    ) -> DeploymentPool: ...
    def pick(self, strategy: str, region: str = "", now: float | None = None) -> int:
        """Index of the deployment to call; does not count the call (use `start`).

        A healthy half-open deployment waiting for its probe comes first. Otherwise,
        among healthy closed ones: "round_robin"; "least_loaded" (fewest in
        flight); "p2c" (two random, the lower (latency EWMA + 1 ms) x (in flight +
        1)); "cost_optimized" (cheapest, then least loaded); "region_affinity"
        (least loaded in `region`, else least loaded anywhere). Ties rotate. Raises
        BackendUnavailable when no deployment is usable, InvalidRequest for an
        unknown strategy.
        """

    def start(self, i: int) -> None:
        """Count a call to deployment `i` as in flight."""

    def finish(self, i: int, latency_ms: float, ok: bool, now: float | None = None) -> None:
        """End a call that took `latency_ms`: in flight -1, latency EWMA (a failure
        can only raise it), failure count, and the circuit (opened when due; a
        probe's finish closes or reopens it)."""

    def trip(self, i: int, now: float | None = None) -> bool:
        """Open deployment `i`'s closed circuit at `now`, as enough failures in a row
        would (same open period, probe and backoff, within `max_ejected_share`), for a
        rule kept outside the pool; whether it opened (False: not closed, or the cap)."""

    def set_healthy(self, i: int, healthy: bool) -> None:
        """Mark deployment `i` healthy or not; unhealthy ones are never picked."""

    def stats(self, i: int) -> tuple[int, float, float, int]:
        """(in_flight, latency_ewma_ms (0 before any sample), ejected_until (end of
        the latest open period, 0 if never), consecutive_failures)."""

    def state(self, i: int, now: float | None = None) -> Literal["closed", "open", "half_open"]:
        """Deployment `i`'s circuit at `now`: "half_open" once its open period is
        over, while it waits for its probe and while the probe is out."""

    def endpoint(self, i: int) -> str: ...
    def __len__(self) -> int: ...

def assign_arm(key: str, weights: Sequence[float]) -> int:
    """The arm (index into `weights`) for `key`: sticky across processes and
    releases (FNV-1a 64 + SplitMix64 finaliser, no random seed), each arm taking
    its weight's share of keys. Weights must be finite and >= 0, not all zero, and
    not empty, else InvalidRequest."""
