"""What the gateway's resilience does, counted: retries, fallbacks, hedges, ejections and
A/B (split) assignments (`modelyard.retries`, `.fallbacks`, `.hedges`, `.ejections`,
`.ab.assignments`).

Each is recorded where the event happens, and only then: the gateway core's chain loop
(a retry's wait, the next model after a failure), its hedge start, its split branch,
the balancer's failed lease finish (a circuit opening) and its hold-out (the health
monitor's eject). A healthy call without any of them records nothing here. Attribute
sets are built per event: these are rare by nature, and bounded by the instruments'
series limit.
"""

from __future__ import annotations

from modelyard.meters.instruments import Meters

MODEL = "gen_ai.request.model"


class ResilienceMeter:
    """The five counters of one stack's `Meters`."""

    def __init__(self, meters: Meters) -> None:
        self._meters = meters

    def retry(self, model_id: str, reason: str) -> None:
        """`model_id` is tried again after a failure whose reason is `reason`."""
        self._meters.retries.add(1, ((MODEL, model_id), ("error.type", reason)))

    def fallback(self, model_id: str, next_model_id: str, reason: str) -> None:
        """The call leaves `model_id`, which failed with `reason`, for `next_model_id`."""
        attributes = (
            (MODEL, model_id),
            ("modelyard.fallback.model", next_model_id),
            ("error.type", reason),
        )
        self._meters.fallbacks.add(1, attributes)

    def hedge(self, model_id: str, hedge_model_id: str) -> None:
        """`model_id` was late with its first piece: `hedge_model_id` is sent the call too."""
        attributes = ((MODEL, model_id), ("modelyard.hedge.model", hedge_model_id))
        self._meters.hedges.add(1, attributes)

    def ejection(self, model_id: str, cause: str) -> None:
        """A deployment of `model_id` is out of rotation; `cause` "circuit", "failure_rate" or
        "health"."""
        attributes = ((MODEL, model_id), ("modelyard.ejection.cause", cause))
        self._meters.ejections.add(1, attributes)

    def assignment(self, model_id: str, split_id: str, arm: str) -> None:
        """A call to a split alias is drawn onto `arm` (served by `model_id`)."""
        attributes = (
            (MODEL, model_id),
            ("modelyard.split.id", split_id),
            ("modelyard.split.arm", arm),
        )
        self._meters.ab_assignments.add(1, attributes)
