"""How one answer is scored, 0..1, with why.

- ``exact``: the answer, stripped, equals `expected` (1) or not (0).
- ``contains``: `expected` is in the answer, case folded.
- ``regex``: Python's `re.search` of `expected` finds a match.
- ``json_schema``: the answer (its first JSON object or array, code fences allowed) is
  valid against the JSON schema `expected` (Draft 2020-12).
- ``numeric``: the answer's first number is within `tolerance` of `expected`.
- ``latency``: the answer came within `latency_budget_ms` (its text is not scored).
- ``judge``: a judge model is asked whether the answer meets the criterion `expected`;
  a reply starting with "yes" scores 1 (`runner.py` asks it; `judge_prompt` words it).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import jsonschema

from modelyard_client.v1 import gateway_pb2

SCORERS = ("exact", "contains", "regex", "json_schema", "numeric", "latency", "judge")
_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)?(?:[eE][-+]?\d+)?")
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


@dataclass(frozen=True)
class Score:
    value: float  # 0..1
    detail: str


def score(case: gateway_pb2.EvaluationCase, answer: str, latency_ms: float) -> Score:
    """`answer` scored by `case.scorer` (any but ``judge``, which needs a model)."""
    kind, expected = case.scorer, case.expected
    if kind == "exact":
        ok = answer.strip() == expected.strip()
        return Score(float(ok), "equal" if ok else f"not equal to {expected[:80]!r}")
    if kind == "contains":
        ok = expected.casefold() in answer.casefold()
        return Score(float(ok), f"{'contains' if ok else 'lacks'} {expected[:80]!r}")
    if kind == "regex":
        ok = re.search(expected, answer) is not None
        return Score(float(ok), f"{'matches' if ok else 'no match for'} /{expected[:80]}/")
    if kind == "json_schema":
        return _json_score(expected, answer)
    if kind == "numeric":
        return _numeric_score(float(expected), case.tolerance, answer)
    if kind == "latency":
        ok = latency_ms <= case.latency_budget_ms
        return Score(float(ok), f"{latency_ms:.0f} ms, budget {case.latency_budget_ms:.0f} ms")
    raise ValueError(f"scorer {kind!r} is not scored here")  # judge: runner.py


def judge_prompt(case: gateway_pb2.EvaluationCase, answer: str) -> str:
    return (
        "You grade answers. Reply with one word, yes or no.\n"
        f"Question: {case.prompt}\nAnswer: {answer}\nCriterion: {case.expected}\n"
        "Does the answer meet the criterion?"
    )


def judged(reply: str) -> Score:
    first = reply.strip().split(maxsplit=1)[0].strip(".,!:;").casefold() if reply.strip() else ""
    return Score(float(first == "yes"), f"the judge said {reply.strip()[:40]!r}")


def _json_score(schema_text: str, answer: str) -> Score:
    fenced = _FENCE.search(answer)
    text = fenced.group(1) if fenced else answer
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        return Score(0.0, "no JSON value in the answer")
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:])
    except ValueError as exc:
        return Score(0.0, f"not JSON: {exc}")
    errors = sorted(
        jsonschema.Draft202012Validator(json.loads(schema_text)).iter_errors(value),
        key=lambda e: list(e.path),
    )
    if errors:
        return Score(0.0, f"not valid: {errors[0].message[:120]}")
    return Score(1.0, "valid against the schema")


def _numeric_score(expected: float, tolerance: float, answer: str) -> Score:
    found = _NUMBER.search(answer)
    if found is None:
        return Score(0.0, "no number in the answer")
    value = float(found.group(0).replace(",", "."))
    ok = math.isfinite(value) and abs(value - expected) <= tolerance
    return Score(float(ok), f"{value:g} against {expected:g} ± {tolerance:g}")
