"""More behaviours of the selector that mutation testing found unchecked (docs/testing.md).

Task analysis of a chat's text and of a one-token budget, a pin's refusal without a
reason, and the candidate pool following the catalog's revision.
"""

from __future__ import annotations

import pytest

from modelyard.assembly.selection import selection_settings
from modelyard.config import parse_config
from modelyard.selector.candidates import CandidatePool
from modelyard.selector.selection import Selector
from modelyard.selector.task_analysis import analyse
from modelyard_client.errors import NoSuitableModel
from modelyard_client.v1 import common_pb2, selector_pb2

C = common_pb2
BACKEND = "  backends:\n    p: {kind: openai_compat, endpoint: 'http://127.0.0.1:9/v1'}\n"
PINNED = "  selection:\n    agents:\n      bot: {model: p/pinned}\n"


def _model(model_id: str) -> C.ModelEntry:
    entry = C.ModelEntry(
        id=model_id,
        provider="p",
        capabilities=[C.CAPABILITY_CHAT],
        input_modalities=[C.MODALITY_TEXT],
        context_window=4096,
    )
    entry.deployments.add(backend="p", endpoint="127.0.0.1:9")
    return entry


def _chat(*texts: str) -> C.Input:
    model_input = C.Input()
    for text in texts:
        model_input.chat.messages.add(role="user", content=text)
    return model_input


def test_a_chats_messages_are_read_as_one_text_a_line_each() -> None:
    # "summarize" ends the first message: a word boundary only if the next one starts a line.
    task = analyse(
        selector_pb2.Task(), _chat("please summarize", "the meeting notes"), C.GenerationParams()
    )
    assert task.type == selector_pb2.TASK_TYPE_SUMMARIZATION
    task = analyse(selector_pb2.Task(), _chat("so tl;dr", "ok"), C.GenerationParams())
    assert task.type == selector_pb2.TASK_TYPE_SUMMARIZATION
    task = analyse(selector_pb2.Task(), _chat("hello", "there"), C.GenerationParams())
    assert task.type == selector_pb2.TASK_TYPE_CHAT


def test_a_one_token_budget_becomes_the_tasks_max_output() -> None:
    params = C.GenerationParams(max_tokens=1)
    assert analyse(selector_pb2.Task(), _chat("hi"), params).max_output_tokens == 1
    params = C.GenerationParams(max_tokens=2)
    assert analyse(selector_pb2.Task(), _chat("hi"), params).max_output_tokens == 2


def test_a_pin_to_a_model_that_cannot_serve_and_gives_no_reason_says_just_that() -> None:
    sick = _model("p/pinned")
    sick.health = C.HEALTH_STATUS_UNAVAILABLE
    config = parse_config("model_system:\n" + BACKEND + PINNED, env={})
    selector = Selector(
        CandidatePool(lambda: [sick], lambda: 1), selection_settings(config.selection)
    )
    request = selector_pb2.SelectRequest()
    request.task.agent_id = "bot"
    request.task.input.text = "hi"
    with pytest.raises(NoSuitableModel) as caught:
        selector.select(request)
    assert str(caught.value) == "agent 'bot' is pinned to 'p/pinned', which cannot serve now"


def test_the_pool_is_rebuilt_when_the_revision_moves_and_only_then() -> None:
    catalog = [_model("p/a")]
    revision = [0]
    builds = [0]

    def models() -> list[C.ModelEntry]:
        builds[0] += 1
        return list(catalog)

    pool = CandidatePool(models, lambda: revision[0])
    entries, candidates = pool.current()
    assert [e.id for e in entries] == ["p/a"]
    assert candidates is not None and len(candidates) == 1
    catalog.append(_model("p/b"))
    pool.current()
    assert builds[0] == 1  # same revision: the built set is kept
    revision[0] = 1
    entries, candidates = pool.current()
    assert [e.id for e in entries] == ["p/a", "p/b"]
    assert candidates is not None and len(candidates) == 2
    assert builds[0] == 2
