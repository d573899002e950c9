"""The selection section of the configuration as selector settings."""

from __future__ import annotations

from modelyard.config import SelectionConfig
from modelyard.config.schema import SelectionPolicy
from modelyard.selector.selection import AgentRule, Policy, SelectionSettings
from modelyard.v1 import selector_pb2


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
    )


def selection_settings(section: SelectionConfig) -> SelectionSettings:
    agents = {
        agent: AgentRule(
            model=rule.model or "",
            policy=_policy(rule.policy) if rule.policy is not None else None,
        )
        for agent, rule in section.agents.items()
    }
    return SelectionSettings(policy=_policy(section), agents=agents)
