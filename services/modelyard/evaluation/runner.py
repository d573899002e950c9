"""Run a suite: every case on every model, at most `concurrency` calls at once, each
through the gateway's own call path (`Ask`: the caller's key, scopes, limits and audit
apply as to any call). A failed call scores 0 with its reason; a model's score is the
weighted mean of its cases'."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from modelyard.evaluation.scorers import Score, judge_prompt, judged, score
from modelyard.evaluation.suites import DEFAULT_CONCURRENCY, DEFAULT_MAX_TOKENS
from modelyard_client.errors import ModelyardError
from modelyard_client.v1 import gateway_pb2

Ask = Callable[[gateway_pb2.GenerateRequest], Awaitable[gateway_pb2.GenerateResponse]]
ANSWER_CHARS = 1024


def _request(
    model: str, case: gateway_pb2.EvaluationCase, prompt: str
) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model, no_cache=True)
    if case.system:
        request.input.chat.messages.add(role="system", content=case.system)
    request.input.chat.messages.add(role="user", content=prompt)
    request.params.max_tokens = case.max_tokens or DEFAULT_MAX_TOKENS
    request.params.temperature = 0.0  # the same answer each run, where the model allows
    return request


async def evaluate(
    ask: Ask,
    models: Sequence[str],
    suite: gateway_pb2.EvaluationSuite,
    concurrency: int = 0,
) -> list[gateway_pb2.ModelEvaluation]:
    """Each model's evaluation, in the order given."""
    gate = asyncio.Semaphore(concurrency or DEFAULT_CONCURRENCY)

    async def one(model: str, case: gateway_pb2.EvaluationCase) -> gateway_pb2.CaseResult:
        async with gate:
            return await _run_case(ask, model, case, suite.judge_model)

    results = await asyncio.gather(*(one(m, c) for m in models for c in suite.cases))
    per_model = len(suite.cases)
    out = []
    for i, model in enumerate(models):
        cases = results[i * per_model : (i + 1) * per_model]
        weights = [c.weight or 1.0 for c in suite.cases]
        total = sum(weights)
        mean = (
            sum(w * r.score for w, r in zip(weights, cases, strict=True)) / total if total else 0.0
        )
        out.append(gateway_pb2.ModelEvaluation(model_id=model, score=mean, cases=cases))
    return out


async def _run_case(
    ask: Ask, model: str, case: gateway_pb2.EvaluationCase, judge_model: str
) -> gateway_pb2.CaseResult:
    started = time.perf_counter()
    try:
        answer = await ask(_request(model, case, case.prompt))
    except ModelyardError as err:
        return gateway_pb2.CaseResult(
            case_id=case.id, score=0.0, error=err.reason, detail=err.message[:ANSWER_CHARS]
        )
    latency_ms = (time.perf_counter() - started) * 1000
    if case.scorer == "judge":
        try:
            reply = await ask(_request(judge_model, case, judge_prompt(case, answer.text)))
            result: Score = judged(reply.text)
        except ModelyardError as err:
            result = Score(0.0, f"the judge {judge_model} failed: {err.reason}")
    else:
        result = score(case, answer.text, latency_ms)
    return gateway_pb2.CaseResult(
        case_id=case.id,
        score=result.value,
        answer=answer.text[:ANSWER_CHARS],
        detail=result.detail,
        latency_ms=latency_ms,
    )
