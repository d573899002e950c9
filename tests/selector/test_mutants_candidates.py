"""A catalog entry as selection sees it (killing mutmut's survivors in
`selector.candidates.candidate_of`, docs/testing.md, the fifth run): an evaluation
suite's quality score reaches the capabilities criterion, and a price per character
(text to speech) is counted at `BYTES_PER_TOKEN` characters to an input token.

In process, through `Selector` with a fixed catalog and the native scorer.
"""

from __future__ import annotations

import pytest

from modelyard.assembly.selection import selection_settings
from modelyard.config import parse_config
from modelyard.selector.candidates import CandidatePool, candidate_of
from modelyard.selector.selection import Selector
from modelyard_client.errors import NoSuitableModel
from modelyard_client.v1 import common_pb2, selector_pb2

C = common_pb2
BACKEND = "  backends:\n    p: {kind: openai_compat, endpoint: 'http://127.0.0.1:9/v1'}\n"


def _model(model_id: str) -> C.ModelEntry:
    entry = C.ModelEntry(
        id=model_id,
        provider="p",
        capabilities=[C.CAPABILITY_CHAT],
        input_modalities=[C.MODALITY_TEXT],
        context_window=100_000,
    )
    entry.deployments.add(backend="p", endpoint="127.0.0.1:9")
    return entry


def _selector(*entries: C.ModelEntry) -> Selector:
    config = parse_config("model_system:\n" + BACKEND, env={})
    return Selector(
        CandidatePool(lambda: list(entries), lambda: 1), selection_settings(config.selection)
    )


def _chat(input_tokens: int = 0) -> selector_pb2.SelectRequest:
    request = selector_pb2.SelectRequest()
    request.task.input.chat.messages.add(role="user", content="hi")
    request.task.estimated_input_tokens = input_tokens
    return request


def test_an_evaluated_quality_moves_the_capabilities_criterion() -> None:
    evaluated, unevaluated = _model("p/evaluated"), _model("p/unevaluated")
    evaluated.quality.score = 0.9
    reply = _selector(evaluated, unevaluated).select(_chat())
    capabilities = {
        c.model_id: next(s.value for s in c.criteria if s.criterion == "capabilities")
        for c in reply.candidates
    }
    # No extras anywhere (1 for all), averaged with the quality; unevaluated: a neutral 0.5.
    assert capabilities == {
        "p/evaluated": pytest.approx((1.0 + 0.9) / 2),
        "p/unevaluated": pytest.approx((1.0 + 0.5) / 2),
    }
    assert candidate_of(evaluated).quality == 0.9


def test_a_price_per_character_is_four_characters_to_an_input_token() -> None:
    speech = _model("p/speech")
    speech.cost.usd_per_input_token = 1e-7
    speech.cost.usd_per_character = 1e-6
    assert candidate_of(speech).usd_per_input_token == pytest.approx(1e-7 + 4 * 1e-6)
    # 1,000 input tokens at 4.1e-6 cost 0.0041: over a 0.004 limit, under a 0.0042 one.
    request = _chat(input_tokens=1000)
    request.constraints.max_cost_per_request_usd = 0.004
    with pytest.raises(NoSuitableModel) as refused:
        _selector(speech).select(request)
    assert str(refused.value).startswith(
        "no model meets the constraints (p/speech: estimated cost $0.0040999"
    )
    request.constraints.max_cost_per_request_usd = 0.0042
    assert _selector(speech).select(request).model_id == "p/speech"
