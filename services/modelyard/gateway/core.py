"""The gateway's request path, free of gRPC servicer concerns.

validate → resolve the model from the live catalog → check it against the
model → reserve rate-limit budget → pick a deployment → stream from the
backend → settle the reservation. Fallback models are tried in order while
nothing has been streamed to the caller yet; once something has, the answer is
continued by the next model of the chain that takes an assistant prefill
(`_continued`), and without one, or when it fails, the failure is
`StreamTruncated` (ABORTED).

A request naming an alias whose route carries a split (an A/B test, a canary
swap) goes to one arm's model, drawn from its sticky key (`split_calls.split_arm`);
its first attempt's outcome is reported once it ends (`arm_outcomes.py`).

Each attempt is measured once, where it ends (`_stream_one`): its start, first
piece, end, tokens, cost and outcome go to the performance tracker (the live
figures selection, the health monitor, alerts and the circuit's failure-rate rule
read), to the attempts meter, to the split's arm outcome, and its fault or not to
the deployment's lease.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing

from modelyard.backends.admission import Admission, gateway_admission
from modelyard.backends.answer_stream import chunk_output, whole_answer
from modelyard.enum_values import value_name
from modelyard.gateway.arm_outcomes import ARM_CANNOT_SERVE, ArmCall, ArmOutcomes, call_cost_usd
from modelyard.gateway.backend_pool import BackendPool
from modelyard.gateway.balancing import Balancer
from modelyard.gateway.catalog_view import CatalogView
from modelyard.gateway.continuation import Prefill, characters_of, continuing_model, cut_short
from modelyard.gateway.conversations import Conversations
from modelyard.gateway.deadline import CallDeadline
from modelyard.gateway.hedging import race
from modelyard.gateway.limits import ModelLimits
from modelyard.gateway.model_chain import ModelChain, chain_failed
from modelyard.gateway.performance import PerformanceTracker
from modelyard.gateway.retries import CallTries, RetryBudgets, Step, step_after
from modelyard.gateway.route_view import RouteView
from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.split_calls import split_arm
from modelyard.gateway.validation import check_against_model, check_request
from modelyard.meters.gateway_calls import AttemptMeter
from modelyard.meters.resilience import ResilienceMeter
from modelyard.model_input import estimate_input_tokens
from modelyard.security.audit import note_attempt, note_first_piece, note_served
from modelyard.security.principal import current_principal
from modelyard.security.scopes import check_model
from modelyard.selector.selection import Selector
from modelyard.servable import servable_health
from modelyard_client.errors import (
    Attempt,
    BackendUnavailable,
    DeadlineExceeded,
    InvalidRequest,
    ModelyardError,
    StreamTruncated,
)
from modelyard_client.v1 import backend_pb2, common_pb2, gateway_pb2

log = logging.getLogger(__name__)


class GatewayCore:
    def __init__(
        self,
        catalog: CatalogView,
        backends: BackendPool,
        limits: ModelLimits | None = None,
        settings: GatewaySettings | None = None,
        selector: Selector | None = None,
        balancer: Balancer | None = None,
        in_flight: Admission | None = None,
        routes: RouteView | None = None,
        conversations: Conversations | None = None,
        outcomes: ArmOutcomes | None = None,
        performance: PerformanceTracker | None = None,
        attempts: AttemptMeter | None = None,
        events: ResilienceMeter | None = None,
    ) -> None:
        self.catalog = catalog
        self.routes = routes
        self.outcomes = outcomes  # None: split calls are routed but not reported
        self.conversations = conversations
        self.backends = backends
        self.limits = limits or ModelLimits()
        self.settings = settings or GatewaySettings()
        self.selector = selector
        # Which models a call tries, and what it raises when none served (`model_chain.py`).
        self.chain = ModelChain(catalog, routes, selector, self.settings)
        # Each attempt's latency, first piece, tokens/s, outcome and cost (`performance.py`).
        self.performance = performance or PerformanceTracker()
        self.balancer = balancer or Balancer()
        self.balancer.reads(self.performance)  # its failure-rate rule reads these figures
        # Per upstream: the retries it had and may still have (`retries.py`).
        self.retry_budgets = RetryBudgets(self.settings.retries)
        # Every model attempt holds a slot; a call finding none is refused (Overloaded).
        self.in_flight = in_flight or gateway_admission()
        # Each attempt in gen_ai.client.operation.duration (`modelyard.meters`); None: not.
        self.attempts = attempts
        # Retries, fallbacks, hedges and split assignments counted (`meters/resilience.py`).
        self.events = events

    def deadline(self, time_remaining: float | None) -> CallDeadline:
        """The deadline of a call starting now whose client left `time_remaining` (None: none)."""
        return CallDeadline.start(time_remaining, self.settings.default_deadline_s)

    async def generate(
        self,
        request: gateway_pb2.GenerateRequest,
        deadline: CallDeadline | None = None,
        api_key: str | None = None,
    ) -> gateway_pb2.GenerateResponse:
        started = time.perf_counter()
        return await response_of(
            self.generate_stream(request, deadline, api_key, streamed=False), started
        )

    async def generate_stream(
        self,
        request: gateway_pb2.GenerateRequest,
        deadline: CallDeadline | None = None,
        api_key: str | None = None,
        *,
        streamed: bool = True,
        checked: bool = False,
    ) -> AsyncGenerator[gateway_pb2.GenerateChunk, None]:
        """The answer's chunks; `deadline` None: the default deadline from now.

        `streamed` False: the caller takes the answer whole (`generate`), so a
        split's outcome reports no time to the first piece. `checked`: `check_request`
        passed already (`GuardedGateway` ran it).
        """
        deadline = deadline or self.deadline(None)
        if not checked:
            check_request(request, self.settings)
        self.catalog.check_fresh()  # a copy known to miss changes is no ground to route on
        # One id for every attempt; the first chunk tells the caller one it did not set.
        request_id = request.request_id or uuid.uuid4().hex
        arm = None
        if self.routes is not None and self.routes.splits:  # no split anywhere: this check only
            arm = split_arm(self.routes.splits, request, request_id, api_key, streamed)
        if arm is not None:
            check_model(current_principal(), request.model, arm.model_id)  # its alias, or it
            chain = [arm.model_id]
            if self.events is not None:
                self.events.assignment(arm.model_id, arm.split_id, arm.arm)
        else:
            chain = self.chain.start(request)
        tries = CallTries(self.retry_budgets)
        failures: list[Attempt] = []
        errors: list[ModelyardError] = []
        index = 0
        while index < len(chain):
            model_id = chain[index]
            sent: list[gateway_pb2.GenerateChunk] = []  # what reached the caller
            tries.starting()
            try:
                one = self._stream_one(model_id, request, request_id, deadline, api_key, arm, tries)
                if arm is not None:  # its first attempt only: retries and fallbacks are no arm's
                    arm = None
                elif (self.settings.hedge_delays or self.settings.hedge_percentiles) and (
                    self.settings.hedges(model_id)
                ):
                    delay = self._hedge_delay_s(model_id)
                    if delay is not None:
                        one = self._hedged(
                            one, delay, chain, index, request, request_id, deadline, api_key
                        )
                async with self.in_flight.slot(), aclosing(one) as chunks:
                    async for chunk in chunks:
                        sent.append(chunk)
                        yield chunk
                return
            except ModelyardError as exc:
                if sent:  # the caller holds part of an answer: not a retry's to finish
                    rest = self._continued(
                        chain, index, sent, exc, request, request_id, deadline, api_key
                    )
                    async with aclosing(rest) as continuation:  # else `cut_short`'s error
                        async for chunk in continuation:
                            yield chunk
                    return
                if self.in_flight.refused(exc):  # the gateway is full: no model would do
                    raise
                step = step_after(exc, sent=tries.reached_backend)
                if step is Step.END or (step is Step.REFUSE and not errors):
                    raise  # a refusal as the first failure is the caller's answer
                failures.append(Attempt.of(model_id, exc))
                errors.append(exc)
                if len(errors) == 1:  # the chain beyond the first models, built on need
                    chain = self.chain.with_fallbacks(chain, request)
                if step is Step.RETRY:
                    wait = tries.retry_wait_s(
                        exc, model_id, self.settings.max_retries_of(model_id), deadline.remaining()
                    )
                    if wait is not None:
                        if self.events is not None:
                            self.events.retry(model_id, exc.reason)
                        await asyncio.sleep(wait)
                        continue
                index = self.chain.next_model(chain, index, exc, failures, errors)
                if self.events is not None and index < len(chain):
                    self.events.fallback(model_id, chain[index], exc.reason)
                tries.next_model()
        raise chain_failed(chain, failures, errors)

    async def _continued(
        self,
        chain: list[str],
        index: int,
        sent: list[gateway_pb2.GenerateChunk],
        failure: ModelyardError,
        request: gateway_pb2.GenerateRequest,
        request_id: str,
        deadline: CallDeadline,
        api_key: str | None,
    ) -> AsyncGenerator[gateway_pb2.GenerateChunk, None]:
        """The rest of an answer that broke off (`failure`) once `sent` had reached the
        caller, from the next model of the chain that continues an assistant prefill.

        That model (CAPABILITY_ASSISTANT_PREFILL, servable, its window holding the input,
        the text sent and what is left of max_tokens) gets the input as chat messages
        and the text sent as the assistant's, to continue; its pieces go on the same
        answer, without the first chunk's model and request ids again, and its last
        chunk ends it with its finish reason and its own usage. Without such a model,
        or when it fails or refuses the prefill, the caller gets the original failure
        as `cut_short` builds it, never that model's error in its place. One try,
        not counted in the call's retries; the model is named in the log.
        """
        model_id = chain[index]
        cut = cut_short(model_id, len(sent), characters_of(sent), failure)
        text = "".join(chunk.text for chunk in sent)
        answered_by = {model_id, sent[0].model_id}  # a hedge's model answers for its own
        later = self.chain.with_fallbacks(chain, request)[index + 1 :]
        found = continuing_model(self.catalog, later, request, answered_by, text, self.settings)
        if found is None:
            raise cut from failure
        continuing, prefill = found
        log.warning(
            "the answer of '%s' for request %s broke off after %d chunks (%s); "
            "continuing it on '%s' from the %d characters delivered",
            model_id,
            request_id,
            len(sent),
            failure.message,
            continuing,
            len(text),
        )
        chunks = characters = 0  # of the continuation, streamed
        one = self._stream_one(continuing, request, request_id, deadline, api_key, prefill=prefill)
        try:
            async with self.in_flight.slot(), aclosing(one) as pieces:
                async for chunk in pieces:
                    chunks += 1
                    characters += len(chunk.text)
                    yield chunk
        except ModelyardError as exc:
            log.warning(
                "continuing request %s on '%s' failed after %d chunks: %s",
                request_id,
                continuing,
                chunks,
                exc.message,
            )
            if chunks:  # the caller holds more than `cut` says: say how much
                cut = cut_short(model_id, len(sent) + chunks, len(text) + characters, failure)
            raise cut from failure

    def _hedge_delay_s(self, model_id: str) -> float | None:
        """How long an attempt on `model_id` waits for its first piece before it is hedged:
        its `hedge_percentile` of the live waits once the tracker has enough, else its
        `hedge_delay_ms`; None: no hedge (a percentile still without figures)."""
        percentile = self.settings.hedge_percentiles.get(model_id)
        if percentile is not None:
            live = self.performance.first_piece_wait(model_id, percentile)
            if live is not None:
                return live
        return self.settings.hedge_delays.get(model_id)

    async def _hedged(
        self,
        primary: AsyncGenerator[gateway_pb2.GenerateChunk, None],
        delay_s: float,
        chain: list[str],
        index: int,
        request: gateway_pb2.GenerateRequest,
        request_id: str,
        deadline: CallDeadline,
        api_key: str | None,
    ) -> AsyncGenerator[gateway_pb2.GenerateChunk, None]:
        """`primary` (an attempt on `chain[index]`), hedged: when its first piece is later
        than `delay_s` (`_hedge_delay_s`), the same request goes to the next model of the
        chain too, and the first to answer is the answer (`hedging.race`). A hedge is
        counted in that upstream's retry budget, and made only while the budget allows;
        the loser is closed and keeps its rate-limit reservation, as any abandoned
        attempt does (what it cost upstream is unknown)."""
        model_id = chain[index]

        def start_hedge() -> AsyncGenerator[gateway_pb2.GenerateChunk, None] | None:
            later = self.chain.with_fallbacks(chain, request)[index + 1 :]
            if not later:
                return None
            budget = self.retry_budgets.for_model(later[0])
            now = self.retry_budgets.clock()
            if not budget.allows_retry(now):
                return None
            budget.retried(now)
            if self.events is not None:
                self.events.hedge(model_id, later[0])
            log.info("hedging '%s' with '%s' for request %s", model_id, later[0], request_id)
            tries = CallTries(self.retry_budgets)
            return self._stream_one(later[0], request, request_id, deadline, api_key, None, tries)

        won = await race(primary, delay_s, start_hedge)
        if won is None:
            return
        async with aclosing(won.stream) as rest:
            yield won.first
            async for chunk in rest:
                yield chunk

    def servable_entry(self, model: str) -> common_pb2.ModelEntry:
        """The catalog entry `model` names, resolved as a Generate's is (`ModelChain.resolve`: its
        alias's route, the caller's key's models) and servable (`_check_servable`); for a
        call that goes to that one model, without Generate's chain (`embeddings.embed`)."""
        entry = self.catalog.get(self.chain.resolve(model))
        _check_servable(entry)
        return entry

    async def _stream_one(
        self,
        model_id: str,
        request: gateway_pb2.GenerateRequest,
        request_id: str,
        deadline: CallDeadline,
        api_key: str | None = None,
        arm: ArmCall | None = None,
        tries: CallTries | None = None,
        prefill: Prefill | None = None,
    ) -> AsyncGenerator[gateway_pb2.GenerateChunk, None]:
        """One attempt on `model_id`; with `prefill`, a continuation (`_continued`): the
        input ends with the answer so far, and the chunks carry no ids of their own.
        `arm`: the attempt is a split's arm's, whose outcome it reports."""
        try:
            model = self.catalog.get(model_id)
            max_tokens = request.params.max_tokens or self.settings.default_max_tokens
            model_input = request.input
            if prefill is not None:
                max_tokens, model_input = prefill.max_tokens, prefill.after(request.input)
            input_tokens = estimate_input_tokens(model_input)
            check_against_model(request, model, max_tokens, input_tokens)
            _check_servable(model)
            context = None
            if request.conversation_id and self.conversations is not None:
                # The history that fits this model: each fallback model gets its own cut.
                room = max_tokens if prefill is None else max_tokens + prefill.tokens
                context = self.conversations.with_history(request, model, room)
                request = context.request
                model_input = request.input if prefill is None else prefill.after(request.input)
                input_tokens = estimate_input_tokens(model_input)
            reservation = await self.limits.reserve(
                model, input_tokens + max_tokens, api_key, input_tokens=input_tokens
            )
            try:
                lease = self.balancer.lease(model, request.constraints.region)
            except BaseException:
                await reservation.settle(0, 0.0)
                raise
        except ARM_CANNOT_SERVE:
            if arm is not None and self.outcomes is not None:  # the arm's model cannot serve
                self.outcomes.record(arm.outcome(failed=True))
            raise
        answer: list[str] = [] if prefill is None else [prefill.text]  # the whole, recorded
        deployment = lease.deployment
        params = common_pb2.GenerationParams()
        params.CopyFrom(request.params)
        params.max_tokens = max_tokens
        params.continue_final_message = prefill is not None  # the gateway's alone to set
        backend_request = backend_pb2.InferRequest(
            model_id=model.id,
            input=model_input,
            params=params,
            request_id=request_id,
        )
        # What is left of the call's deadline: fallback models share it.
        timeout = min(deadline.remaining(), self.settings.backend_timeout_s)
        used = input_tokens
        used_usd = 0.0  # what the answer cost, once it finished
        first = True
        finished = False
        failed = False  # ended in an error of the model's (not a refusal of the request)
        refused = False  # the backend refused the request (InvalidRequest and its kin)
        error_type = ""  # its reason, when it failed
        clock = self.performance.clock
        started, first_at, output_tokens = clock(), 0.0, 0
        healthy_call = True  # the deployment's fault or not, for outlier ejection
        refund = False  # failed before the backend answered anything: nothing was spent
        if tries is not None:
            tries.sending(model.id)
        note_attempt()
        backend_stream = self.backends.infer_stream(deployment, backend_request, timeout)
        try:
            async for chunk in backend_stream:
                out = gateway_pb2.GenerateChunk(text=chunk.text)
                if chunk.HasField("output"):  # speech, segments, images, tensors
                    out.output.CopyFrom(chunk.output)
                if first:
                    note_first_piece()
                    if prefill is None:  # a continuation's answer had its first chunk
                        out.model_id = model.id
                        out.request_id = request_id
                        if context is not None:
                            out.history_turns = context.history_turns
                            out.trimmed_turns = context.trimmed_turns
                    first, first_at = False, clock()
                if context is not None:
                    answer.append(chunk.text)
                if chunk.finish_reason:
                    if context is not None:  # stored before the caller hears it finished
                        assert self.conversations is not None
                        self.conversations.record(request, context, "".join(answer))
                    out.finish_reason = chunk.finish_reason
                    out.usage.CopyFrom(chunk.usage)
                    if chunk.tool_calls:
                        out.tool_calls.extend(chunk.tool_calls)
                    if chunk.dropped_params:
                        out.dropped_params.extend(chunk.dropped_params)
                    # Some upstreams report no input count: keep our estimate then.
                    used = (chunk.usage.input_tokens or input_tokens) + chunk.usage.output_tokens
                    output_tokens = chunk.usage.output_tokens
                    # What it cost, once: settled against the budgets, noted in the audit row.
                    used_usd = call_cost_usd(chunk.usage, model.cost, input_tokens)
                    out.usage.cost_usd = used_usd  # every answer says what it cost
                    finished = True
                    note_served(
                        model.id,
                        used - chunk.usage.output_tokens,
                        chunk.usage.output_tokens,
                        used_usd,
                    )
                yield out
            if not finished:  # raised in here so that it counts against the deployment
                raise StreamTruncated(
                    f"backend '{deployment.backend}' at {deployment.endpoint} ended the stream "
                    f"for '{model.id}' without a finish reason: the answer is truncated"
                )
        except DeadlineExceeded as exc:
            healthy_call, failed, error_type = False, True, exc.reason
            raise deadline.exceeded(exc) from exc
        except (BackendUnavailable, StreamTruncated) as exc:
            healthy_call, failed, error_type = False, True, exc.reason
            refund = first and not isinstance(exc, StreamTruncated)
            raise
        except ModelyardError as exc:
            refund = first  # an error answer (a refusal, a rate limit) before any piece
            refused = isinstance(exc, InvalidRequest)
            failed, error_type = not refused, exc.reason
            raise
        except Exception as exc:  # no error of the hierarchy: the gateway's INTERNAL
            failed, error_type = True, type(exc).__name__
            raise
        finally:
            # The attempt, measured once: every reader below gets these same figures.
            ended = clock()
            if finished or failed:  # not one this gateway closed, nor a refused request
                self.performance.record(
                    model.id,
                    model.provider,
                    deployment.endpoint,
                    started,
                    first_at,
                    output_tokens,
                    not failed,
                    used_usd,
                    not healthy_call,
                    ended,
                )
                if self.attempts is not None:
                    kind = request.input.WhichOneof("kind") or ""
                    self.attempts.record(kind, model, ended - started, error_type)
            elif first and not refused:  # closed by the gateway before any piece came
                self.performance.closed_waiting(model.id, model.provider, started, ended)
            if arm is not None and self.outcomes is not None and (finished or failed or refused):
                ttft = first_at - started if first_at else 0.0
                outcome = arm.outcome(failed or refused, ended - started, ttft, used_usd)
                self.outcomes.record(outcome)
            await backend_stream.aclose()  # cancels the backend call if we stop early
            lease.finish(healthy_call)
            # An attempt the backend failed before answering anything cost nothing
            # upstream: all back. Unfinished otherwise (truncated, timed out, abandoned),
            # its cost is unknown: it keeps its whole reservation, tokens and spend.
            await reservation.settle(
                used if finished else 0 if refund else input_tokens + max_tokens,
                used_usd if finished else 0.0 if refund else None,
            )


async def response_of(
    chunks: AsyncGenerator[gateway_pb2.GenerateChunk, None],
    started: float,
    seen: Callable[[gateway_pb2.GenerateChunk], None] | None = None,
) -> gateway_pb2.GenerateResponse:
    """The unary answer of a streamed one (`Generate`): its text whole, the first chunk's
    model and ids, the last one's finish and usage; `started` a `perf_counter` reading;
    `seen` shown each chunk as it is read (`whole_answer`)."""
    whole = await whole_answer(
        chunks, empty=gateway_pb2.GenerateChunk(), output_of=chunk_output, seen=seen
    )
    return gateway_pb2.GenerateResponse(
        model_id=whole.first.model_id,
        text=whole.text,
        finish_reason=whole.last.finish_reason,
        usage=whole.last.usage,
        tool_calls=whole.last.tool_calls,
        output=whole.output,
        dropped_params=whole.last.dropped_params,
        latency_ms=(time.perf_counter() - started) * 1000,
        request_id=whole.first.request_id,
        history_turns=whole.first.history_turns,
        trimmed_turns=whole.first.trimmed_turns,
        cached=whole.first.cached,
    )


def _check_servable(model: common_pb2.ModelEntry) -> None:
    if not servable_health(model.health):
        raise BackendUnavailable(
            f"model '{model.id}' is {value_name(common_pb2.HealthStatus.DESCRIPTOR, model.health)}"
            + (f": {model.health_reason}" if model.health_reason else "")
        )
    if not model.deployments:
        raise BackendUnavailable(f"model '{model.id}' has no deployment: no backend serves it")
