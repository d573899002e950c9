"""Each scorer on answers that pass and answers that fail; suites refused naming the field."""

from __future__ import annotations

import pytest

from modelyard.evaluation.scorers import judged, score
from modelyard.evaluation.suites import check_suite, resolve, shipped, suite_from_yaml
from modelyard_client.errors import InvalidRequest, NotFound
from modelyard_client.v1 import gateway_pb2

Case = gateway_pb2.EvaluationCase


@pytest.mark.parametrize(
    ("case", "answer", "expected"),
    [
        (Case(scorer="exact", expected="Paris"), " Paris\n", 1.0),
        (Case(scorer="exact", expected="Paris"), "Paris.", 0.0),
        (Case(scorer="contains", expected="paris"), "It is PARIS.", 1.0),
        (Case(scorer="contains", expected="paris"), "Lyon", 0.0),
        (Case(scorer="regex", expected=r"\bfour\b"), "three, four, five", 1.0),
        (Case(scorer="regex", expected=r"\bfour\b"), "fourteen", 0.0),
        (Case(scorer="numeric", expected="4", tolerance=0), "The answer is 4.", 1.0),
        (Case(scorer="numeric", expected="4", tolerance=0.5), "about 4,4 then 9", 1.0),
        (Case(scorer="numeric", expected="4", tolerance=0), "5", 0.0),
        (Case(scorer="numeric", expected="4"), "four", 0.0),
        (
            Case(scorer="json_schema", expected='{"required": ["ok"]}'),
            '```json\n{"ok": 1}\n```',
            1.0,
        ),
        (Case(scorer="json_schema", expected='{"required": ["ok"]}'), 'Sure: {"no": 1}', 0.0),
        (Case(scorer="json_schema", expected='{"type": "array"}'), "no json here", 0.0),
    ],
)
def test_each_scorer_passes_and_fails_answers(case: Case, answer: str, expected: float) -> None:
    assert score(case, answer, latency_ms=10).value == expected


def test_the_latency_scorer_reads_the_time_not_the_text() -> None:
    case = Case(scorer="latency", latency_budget_ms=100)
    assert (score(case, "", 99).value, score(case, "", 101).value) == (1.0, 0.0)
    assert score(case, "", 101).detail == "101 ms, budget 100 ms"


def test_a_judge_says_yes_or_not() -> None:
    assert [judged(r).value for r in ("Yes.", "yes, it does", "No", "", "maybe yes")] == [
        1.0,
        1.0,
        0.0,
        0.0,
        0.0,
    ]


def _suite(**case: object) -> gateway_pb2.EvaluationSuite:
    fields = {"id": "c1", "prompt": "p", "scorer": "contains", "expected": "x", **case}
    return gateway_pb2.EvaluationSuite(name="s", cases=[Case(**fields)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("case", "field", "words"),
    [
        ({"scorer": "fuzzy"}, "cases[0].scorer", "scorer must be one of exact, contains"),
        ({"scorer": "regex", "expected": "(unclosed"}, "cases[0].expected", "not a regular"),
        ({"scorer": "json_schema", "expected": '{"type": 3}'}, "cases[0].expected", "JSON schema"),
        ({"scorer": "numeric", "expected": "four"}, "cases[0].expected", "must be a number"),
        ({"scorer": "latency", "expected": ""}, "cases[0].latency_budget_ms", "latency_budget"),
        ({"scorer": "judge"}, "cases[0].scorer", "judge_model"),
        ({"prompt": "  "}, "cases[0].prompt", "prompt must not be empty"),
        ({"id": ""}, "cases[0].id", "id must be 1-128"),
        ({"weight": -1.0}, "cases[0].weight", "weight must be"),
    ],
)
def test_a_wrong_case_is_refused_naming_its_field(
    case: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_suite(_suite(**case))
    assert refused.value.field == field
    assert words in refused.value.message


def test_requests_are_checked_before_any_case_runs() -> None:
    def refused(request: gateway_pb2.EvaluateModelRequest) -> str | None:
        with pytest.raises(InvalidRequest) as err:
            resolve(request)
        return err.value.field

    assert refused(gateway_pb2.EvaluateModelRequest(suite="basics")) == "models"
    many = gateway_pb2.EvaluateModelRequest(models=["m"] * 17, suite="basics")
    assert refused(many) == "models"
    both = gateway_pb2.EvaluateModelRequest(models=["m"], suite="basics", inline=_suite())
    assert refused(both) == "suite"
    assert refused(gateway_pb2.EvaluateModelRequest(models=["m"])) == "suite"
    assert refused(gateway_pb2.EvaluateModelRequest(models=["m"], suite="../etc")) == "suite"
    with pytest.raises(NotFound, match=r"no suite 'nope' \(shipped: basics\)"):
        resolve(gateway_pb2.EvaluateModelRequest(models=["m"], suite="nope"))


def test_the_shipped_suite_reads_and_checks() -> None:
    assert shipped() == ["basics"]
    suite = resolve(gateway_pb2.EvaluateModelRequest(models=["m"], suite="basics"))
    assert suite.name == "basics" and len(suite.cases) == 6
    assert {c.scorer for c in suite.cases} == {
        "contains",
        "regex",
        "numeric",
        "json_schema",
        "latency",
    }


def test_a_suite_file_with_an_unknown_field_is_refused_naming_it() -> None:
    text = "name: s\ncases:\n  - {id: a, prompt: p, scorer: exact, expected: x, expect: y}\n"
    with pytest.raises(InvalidRequest, match=r"cases\[0\] has unknown fields \['expect'\]"):
        suite_from_yaml(text, "s.yaml")
