"""`Constraints.region` in selection: a model with no deployment there is not a candidate,
and its rejection names the region."""

from __future__ import annotations

import pytest

from modelyard.assembly.selection import selection_settings
from modelyard.config import default_config
from modelyard.selector.candidates import CandidatePool
from modelyard.selector.selection import Selector
from modelyard_client.errors import NoSuitableModel
from modelyard_client.v1 import common_pb2, selector_pb2

C = common_pb2


def _model(model_id: str, *regions: str, latency_ms: float = 100) -> C.ModelEntry:
    entry = C.ModelEntry(
        id=model_id,
        provider="p",
        capabilities=[C.CAPABILITY_TEXT_GENERATION],
        input_modalities=[C.MODALITY_TEXT],
    )
    entry.performance.latency_ms_p50 = latency_ms
    for i, region in enumerate(regions or ("",)):
        entry.deployments.add(backend="p", endpoint=f"10.0.0.{i + 1}:9", region=region)
    return entry


ENTRIES = [
    _model("p/both", "us", "eu", latency_ms=500),  # the slowest, and the one deployed in eu
    _model("p/us", "us", latency_ms=10),
    _model("p/nowhere", latency_ms=20),  # a deployment with no region
]


def _selector(*entries: C.ModelEntry) -> Selector:
    settings = selection_settings(default_config({}).selection)
    return Selector(CandidatePool(lambda: list(entries), lambda: 1), settings)


def _request(region: str, *excluded: str) -> selector_pb2.SelectRequest:
    request = selector_pb2.SelectRequest()
    request.task.input.text = "hi"
    request.constraints.region = region
    request.constraints.excluded_models.extend(excluded)
    return request


def test_only_models_deployed_in_the_region_are_candidates_each_other_told_why() -> None:
    reply = _selector(*ENTRIES).select(_request("eu"))
    assert reply.model_id == "p/both"
    reasons = {c.model_id: (c.eligible, c.rejection_reason) for c in reply.candidates}
    assert reasons == {
        "p/both": (True, ""),
        "p/us": (False, "no deployment in region 'eu'"),
        "p/nowhere": (False, "no deployment in region 'eu'"),
    }
    assert _selector(*ENTRIES).ranked(_request("eu")) == ["p/both"]


def test_no_region_leaves_every_model_in() -> None:
    assert _selector(*ENTRIES).ranked(_request("")) == ["p/us", "p/nowhere", "p/both"]
    assert _selector(*ENTRIES).ranked(_request("us")) == ["p/us", "p/both"]


def test_a_model_the_request_excludes_is_still_excluded_by_the_request() -> None:
    reply = _selector(*ENTRIES).select(_request("eu", "p/us"))
    reasons = {c.model_id: c.rejection_reason for c in reply.candidates}
    assert reasons["p/us"] == "excluded by the request"
    assert reasons["p/nowhere"] == "no deployment in region 'eu'"


def test_a_region_no_model_is_deployed_in_names_each_model_and_the_region() -> None:
    with pytest.raises(NoSuitableModel) as refused:
        _selector(*ENTRIES).ranked(_request("ap"))
    assert str(refused.value) == (
        "no model meets the constraints (p/both: no deployment in region 'ap'; "
        "p/nowhere: no deployment in region 'ap'; p/us: no deployment in region 'ap')"
    )
