"""The security stages around the gateway's answers: guardrails, then anonymization.

`GuardedGateway` wraps whatever answers a call — the response cache over the
core (`CachedGateway`) or the core itself — and is the first and last thing a
Generate, GenerateStream or batch item passes (an Embed passes its input
stages, `GuardedGateway.embed`):

    check_request → guardrails on the input → redaction → [cache → core → backend]
    → restoration (when asked) → output deny rules → schema of the whole answer → caller

Every input check runs before any backend call. It sits outside the cache and
the core, not inside them, so what they keep (the cache's key and stored
answer, the conversation history, split-call outcomes, their log lines) is
made from the redacted request and the answer as the model gave it, never
from the values restored for the caller; a cache hit is restored with the
hitting request's own values. The output checks see what the caller would
get (restored text when `restore_redacted` is set).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from modelyard.config.security import GuardrailsConfig, SecurityConfig
from modelyard.gateway.core import GatewayCore, response_of
from modelyard.gateway.deadline import CallDeadline
from modelyard.gateway.embeddings import check_embed_request, embed
from modelyard.gateway.guardrails import Guardrails
from modelyard.gateway.redaction import Chunks, Placeholders, Redaction
from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.validation import check_request
from modelyard.meters.gateway_calls import AnswerMeasure, GatewayCallMeter
from modelyard_client.v1 import gateway_pb2


class Answers(Protocol):
    """What answers a call: `GatewayCore`, or `CachedGateway` in front of it."""

    def generate_stream(
        self,
        request: gateway_pb2.GenerateRequest,
        deadline: CallDeadline | None = None,
        api_key: str | None = None,
        *,
        streamed: bool = True,
        checked: bool = False,
    ) -> Chunks: ...


@dataclass(frozen=True)
class SecurityStages:
    """The configured stages; the default: guardrails' defaults, anonymization off."""

    guardrails: Guardrails = field(default_factory=lambda: Guardrails(GuardrailsConfig()))
    redaction: Redaction | None = None

    @classmethod
    def from_config(cls, config: SecurityConfig) -> SecurityStages:
        return cls(Guardrails(config.guardrails), Redaction.from_config(config.redaction))

    def around(
        self, answers: Answers, core: GatewayCore, meter: GatewayCallMeter | None = None
    ) -> GuardedGateway:
        return GuardedGateway(answers, core, self, meter)


class GuardedGateway:
    """`answers` behind the security stages (see the module doc)."""

    def __init__(
        self,
        answers: Answers,
        core: GatewayCore,
        stages: SecurityStages,
        meter: GatewayCallMeter | None = None,
    ) -> None:
        self.answers = answers
        self.core = core
        self.stages = stages
        self.meter = meter  # the GenAI server instruments, recorded as each answer ends

    @property
    def settings(self) -> GatewaySettings:
        return self.core.settings

    def deadline(self, time_remaining: float | None) -> CallDeadline:
        return self.core.deadline(time_remaining)

    async def generate(
        self,
        request: gateway_pb2.GenerateRequest,
        deadline: CallDeadline | None = None,
        api_key: str | None = None,
    ) -> gateway_pb2.GenerateResponse:
        started = time.perf_counter()
        chunks, measure = self.opened(request, deadline, api_key, streamed=False)
        if measure is None:
            return await response_of(chunks, started)
        error: BaseException | None = None
        try:  # measured as it is read (`opened`)
            return await response_of(chunks, started, measure.seen)
        except BaseException as exc:
            error = exc
            raise
        finally:
            measure.ended(error)

    def opened(
        self,
        request: gateway_pb2.GenerateRequest,
        deadline: CallDeadline | None = None,
        api_key: str | None = None,
        *,
        streamed: bool = True,
    ) -> tuple[Chunks, AnswerMeasure | None]:
        """The answer's chunks unmeasured, with the measure their reader keeps as it passes
        them on (None without a meter): `GatewayServicer.stream`'s loop, `whole_answer`'s
        for `generate`; no chunk crosses a generator layer of the meter's own. The input
        stages run now, when called: bad input raises here, before any chunk is asked for
        (a refusal recorded by the measure too). With nothing to restore or check in the
        answer (the default), the chunks are the inner stage's own."""
        if self.meter is None:
            return self._stages(request, deadline, api_key, streamed), None
        measure = self.meter.measure(request, time.perf_counter())
        try:
            chunks = self._stages(request, deadline, api_key, streamed)
        except BaseException as exc:
            measure.ended(exc)
            raise
        return chunks, measure

    def _stages(
        self,
        request: gateway_pb2.GenerateRequest,
        deadline: CallDeadline | None,
        api_key: str | None,
        streamed: bool,
    ) -> Chunks:
        check_request(request, self.core.settings)  # bounds first: the guardrails quote fields
        request = self.stages.guardrails.check_input(request)
        check = self.stages.guardrails.answer_check(request)
        sent, placeholders = request, None
        if self.stages.redaction is not None:
            sent, placeholders = self.stages.redaction.redact(request)
            sent.restore_redacted = False  # the caller's wish, for this stage alone
        # Checked once, here: the cache and the core do not check it again.
        chunks = self.answers.generate_stream(
            sent, deadline, api_key, streamed=streamed, checked=True
        )
        if placeholders is not None and request.restore_redacted and len(placeholders):
            chunks = placeholders.restoring(chunks)
        if check is not None:
            chunks = check.checked(chunks)
        return chunks

    async def embed(
        self,
        request: gateway_pb2.EmbedRequest,
        deadline: CallDeadline | None = None,
        api_key: str | None = None,
    ) -> gateway_pb2.EmbedResponse:
        """An Embed behind the input stages: its bounds first, then the guardrails over its
        inputs (`Guardrails.check_texts`, each named ``inputs[i]``), then anonymization
        (each input redacted, the placeholders numbered across the call), so no value the
        detectors find reaches the model. Nothing comes back to restore or check: vectors
        hold no text. Then `embeddings.embed`, which checks the request as it is sent."""
        check_embed_request(request, self.core.settings.input_limits)
        named = [(f"inputs[{i}]", text) for i, text in enumerate(request.inputs)]
        inputs = [text for _, text in self.stages.guardrails.check_texts(named)]
        if self.stages.redaction is not None:
            placeholders = Placeholders(taken="\0".join(inputs))
            inputs = [self.stages.redaction.redact_text(text, placeholders) for text in inputs]
        if inputs != list(request.inputs):
            sent = gateway_pb2.EmbedRequest()
            sent.CopyFrom(request)
            sent.inputs[:] = inputs
            request = sent
        return await embed(self.core, request, deadline, api_key)
