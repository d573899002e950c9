"""Keys the schema accepts whose behaviour is not built yet.

Every key either acts or is named here; `config check` and start-up print
``accepted, not implemented yet: KEY.PATH`` for each one a file gives, so no
setting is silently ignored. Remove a pattern in the change that builds it.
"""

from __future__ import annotations

from collections.abc import Callable

from modelyard.config.schema import ModelyardConfig, SelectionPolicy

NOTICE = "accepted, not implemented yet"

Applies = Callable[[ModelyardConfig, list[str]], bool]


def _always(config: ModelyardConfig, path: list[str]) -> bool:
    return True


def _backend_kind(*kinds: str) -> Applies:
    def applies(config: ModelyardConfig, path: list[str]) -> bool:
        backend = config.backends.get(path[1])
        return backend is not None and backend.kind in kinds

    return applies


def _not_multi_criteria(config: ModelyardConfig, path: list[str]) -> bool:
    policy: SelectionPolicy = config.selection
    if path[0] == "selection" and path[1] == "agents":
        rule = config.selection.agents.get(path[2])
        policy = rule.policy if rule is not None and rule.policy is not None else policy
    return policy.algorithm != "multi_criteria"


# (key path with `*` for one segment, when it counts, what will build it).
_POLICY = ("selection", "selection.agents.*.policy")
UNBUILT: tuple[tuple[str, Applies, str], ...] = (
    (
        "registry.health_check_interval",
        _always,
        "the registry checks no health itself; the gateway's: monitoring.health_check_interval",
    ),
    ("registry.cache_ttl", _always, "the registry keeps no cache; responses: gateway.cache.ttl"),
    *((f"{p}.algorithm", _not_multi_criteria, "only multi_criteria runs") for p in _POLICY),
    ("backends.*.compute_units", _always, "CoreML prediction takes the default"),
    ("backends.*.cache_dir", _always, "CoreML compiles models where coremltools puts them"),
    ("backends.*.models", _backend_kind("local", "coreml"), "every file found is served"),
    ("backends.*.model_profiles.*.max_output_tokens", _always, "the catalog has no such limit"),
)


def not_implemented(config: ModelyardConfig) -> dict[str, str]:
    """The key paths the file gave that are accepted but do not act yet, with why.

    A key is reported once, at the depth the file gave it: ``hot_swap.enabled``
    when the file sets it, ``hot_swap`` for an empty ``hot_swap: {}``.
    """
    found: dict[str, str] = {}
    for key in config.given_keys:
        path = key.split(".")
        for pattern, applies, why in UNBUILT:
            if _matches(pattern.split("."), path) and applies(config, path):
                found[key] = why
                break
    deepest = (k for k in found if not any(o.startswith(k + ".") for o in found))
    return {k: found[k] for k in sorted(deepest)}


def notices(config: ModelyardConfig) -> list[str]:
    """One line per key that does not act yet: ``accepted, not implemented yet: KEY (why)``."""
    return [f"{NOTICE}: {key} ({why})" for key, why in not_implemented(config).items()]


def _matches(pattern: list[str], path: list[str]) -> bool:
    """`path` is the pattern's key or a key below it."""
    if len(path) < len(pattern):
        return False
    return all(p in ("*", s) for p, s in zip(pattern, path, strict=False))
