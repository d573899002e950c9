"""The selection section of the configuration as selector settings.

The configuration's types are the file's schema (validated, with key paths in
errors); the selector's are the domain's, holding defaults in the messages a
request overrides them with. Every default (weights included) comes from the
configuration: the selector has none of its own.
"""

from __future__ import annotations

from modelyard.config import SelectionConfig
from modelyard.config.schema import SelectionPolicy
from modelyard.selector.selection import Policy, SelectionSettings
from modelyard_client.v1 import common_pb2, selector_pb2


def _policy(section: SelectionPolicy) -> Policy:
    w, c = section.weights, section.constraints
    constraints = selector_pb2.Constraints(
        max_latency_ms=c.max_latency_ms or 0,
        max_cost_per_request_usd=c.max_cost_per_request or 0.0,
        min_reliability=c.min_reliability or 0.0,
    )
    return Policy(
        weights=selector_pb2.SelectionWeights(
            performance=w.performance,
            cost=w.cost,
            reliability=w.reliability,
            capabilities=w.capabilities,
        ),
        constraints=constraints,
        required_capabilities=tuple(
            common_pb2.Capability.Value(f"CAPABILITY_{name.upper()}")
            for name in c.required_capabilities
        ),
        min_context_window=c.min_context_window or 0,
    )


def selection_settings(section: SelectionConfig) -> SelectionSettings:
    """A pinned agent maps to its model id, an agent with a policy to that policy."""
    agents: dict[str, str | Policy] = {}
    for agent, rule in section.agents.items():  # the configuration allows one of the two
        if rule.model is not None:
            agents[agent] = rule.model
        elif rule.policy is not None:
            agents[agent] = _policy(rule.policy)
    return SelectionSettings(policy=_policy(section), agents=agents)
