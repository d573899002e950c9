"""The whole gateway served by grpclib beside grpc.aio: what another gRPC server saves.

`bench/grpc_floor.py --shape grpclib` shows a bare grpclib server (pure Python over h2,
on the event loop's thread alone) costing about a third less per call than a bare
grpc.aio one. This asks what that is worth to the gateway with everything in it. One
stack process (`modelyard serve gateway registry backend-openai-compat`, the fake
upstream, as `bench/gateway_overhead.py` runs it) serves GatewayService twice: on
grpc.aio as always, and on grpclib, whose calls go through the same interceptor
(keys, audit, span, counting, the slow-reader writes) and servicer by a thin adapter
(`_Context`, the part of grpc.aio's ServicerContext the gateway reads). The Go load
generator drives each in turn, rounds interleaved, and the process's CPU per call is
read from /proc around each run: the other server sits idle meanwhile.

An experiment, not a second server for the product: the adapter answers the healthy
path and aborts, and leaves out what grpclib would need for the rest (TLS, health,
reflection, draining, the workers' forwarding).

    .venv/bin/python bench/grpclib_gateway.py --rounds 4
"""

from __future__ import annotations

import argparse
import os
import runpy
import statistics
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_openai_upstream import UpstreamProcess
from gateway_overhead import (
    EXPECTED,
    MAX_TOKENS,
    PROMPT,
    GatewayProcess,
    build_go_loadgen,
    free_port,
    go_run,
)

PORT_ENV = "MODELYARD_BENCH_GRPCLIB_PORT"


class _Context:
    """What the interceptor and the gateway's servicer ask of a call's context, over a
    grpclib stream."""

    __slots__ = ("_code", "_metadata", "_serialize", "_stream", "trailing")

    def __init__(self, stream: Any, serialize: Any) -> None:
        self._stream = stream
        self._serialize = serialize
        self._metadata = tuple(stream.metadata.items())
        self._code: Any = None
        self.trailing: tuple[tuple[str, str | bytes], ...] = ()

    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._metadata

    def time_remaining(self) -> float | None:
        deadline = self._stream.deadline
        return None if deadline is None else float(deadline.time_remaining())

    async def write(self, message: Any) -> None:
        await self._stream.send_message(self._serialize(message))

    def set_trailing_metadata(self, metadata: Iterable[tuple[str, str | bytes]]) -> None:
        self.trailing = tuple(metadata)

    async def send_initial_metadata(self, metadata: Iterable[tuple[str, str | bytes]]) -> None:
        await self._stream.send_initial_metadata(metadata=tuple(metadata))

    def peer(self) -> str:
        host, port = self._stream.peer.addr()[:2]
        return f"ipv4:{host}:{port}"

    def code(self) -> Any:
        return self._code

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}

    async def abort(
        self, code: Any, details: str, trailing_metadata: Iterable[tuple[str, Any]] = ()
    ) -> None:
        from grpc.aio import AbortError
        from grpclib.const import Status

        self._code = code
        await self._stream.send_trailing_metadata(
            status=Status(code.value[0]), status_message=details, metadata=tuple(trailing_metadata)
        )
        raise AbortError()


async def _serve_grpclib(bindings: list[Any], options: dict[str, Any], port: int) -> Any:
    """GatewayService of `bindings` on grpclib at `port`, through modelyard's interceptor."""
    from grpc.aio import AbortError
    from grpclib.const import Cardinality, Handler
    from grpclib.encoding.base import CodecBase
    from grpclib.server import Server

    from modelyard.server.interceptor import CallGate, ModelyardServerInterceptor
    from modelyard_client.v1 import gateway_pb2

    class Raw(CodecBase):  # the interceptor parses the request bytes itself
        __content_subtype__ = "proto"

        def encode(self, message: Any, message_type: Any) -> bytes:
            return bytes(message)

        def decode(self, data: bytes, message_type: Any) -> bytes:
            return data

    class Collected:  # a server as a generated add_<Service>Servicer_to_server sees it
        generic: list[Any] = []

        def add_generic_rpc_handlers(self, handlers: Iterable[Any]) -> None:
            self.generic.extend(handlers)

        def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
            pass

    collected = Collected()
    for binding in bindings:
        binding.register(collected)
    interceptor = ModelyardServerInterceptor(
        CallGate(),
        authenticator=options.get("authenticator"),
        audit=options.get("audit"),
        slow_reader_timeout_s=options.get("slow_reader_timeout_s"),
        requests=options.get("requests"),
    )

    async def continuation(details: Any) -> Any:
        for generic in collected.generic:
            handler = generic.service(details)
            if handler is not None:
                return handler
        return None

    class Details:
        __slots__ = ("invocation_metadata", "method")

        def __init__(self, method: str) -> None:
            self.method = method
            self.invocation_metadata = ()

    def method_handler(path: str, streaming: bool) -> Handler:
        details = Details(path)

        async def call(stream: Any) -> None:
            raw = await stream.recv_message()
            handler = await interceptor.intercept_service(continuation, cast(Any, details))
            context = _Context(stream, handler.response_serializer)
            try:
                if streaming:
                    await handler.unary_stream(raw, context)
                else:
                    answer = await handler.unary_unary(raw, context)
                    await stream.send_message(handler.response_serializer(answer))
            except AbortError:
                return
            if context.trailing:
                await stream.send_trailing_metadata(metadata=context.trailing)

        cardinality = Cardinality.UNARY_STREAM if streaming else Cardinality.UNARY_UNARY
        return Handler(call, cardinality, bytes, bytes)

    service = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"]
    mapping = {
        f"/{service.full_name}/{m.name}": method_handler(
            f"/{service.full_name}/{m.name}", m.server_streaming
        )
        for m in service.methods
        if not m.client_streaming
    }

    class Gateway:
        def __mapping__(self) -> dict[str, Handler]:
            return mapping

    server = Server([Gateway()], codec=Raw())
    await server.start("127.0.0.1", port)
    return server


def serve_child(argv: list[str]) -> None:
    """`modelyard.cli` with `argv`, its first server also on grpclib at $PORT_ENV."""
    import modelyard.assembly.stack as stack

    start_server = vars(stack)["start_server"]  # the experiment's one seam, swapped below
    kept: list[Any] = []

    async def both(bindings: Iterable[Any], address: str, **options: Any) -> Any:
        bindings = list(bindings)
        running = await start_server(bindings, address, **options)
        if not kept:
            kept.append(await _serve_grpclib(bindings, options, int(os.environ[PORT_ENV])))
        return running

    vars(stack)["start_server"] = both
    sys.argv = ["modelyard", *argv]
    runpy.run_module("modelyard.cli", run_name="__main__", alter_sys=True)


def measure(args: argparse.Namespace) -> int:
    binary = build_go_loadgen()
    port = free_port()
    os.environ[PORT_ENV] = str(port)
    found: dict[tuple[str, str, int], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp, UpstreamProcess() as up:
        gw = GatewayProcess(up.url, Path(tmp), python_args=(__file__, "--child"))
        sides = {"grpc.aio": gw.address, "grpclib": f"127.0.0.1:{port}"}
        try:
            for r in range(args.rounds):
                for side in list(sides) if r % 2 == 0 else list(reversed(sides)):
                    for call in ("stream", "unary"):
                        for in_flight, n in ((args.in_flight, args.requests), (1, 1000)):
                            cmd = [str(binary), "-call", call, "-addr", sides[side]]
                            cmd += ["-model", gw.model_id, "-prompt", PROMPT, "-warmup", "300"]
                            cmd += ["-max-tokens", str(MAX_TOKENS), "-expect-text", EXPECTED]
                            cmd += ["-expect-finish", "stop"]
                            m = go_run(side, cmd, in_flight, n, {"gateway": gw.proc.pid})
                            if m.errors:
                                print(f"{side} {call}: {m.errors} errors, {m.first_error}")
                                return 1
                            print(f"{side} {call}: {m.summary()}", flush=True)
                            found.setdefault((side, call, in_flight), []).append(
                                (m.cpu_ms_per_req["gateway"], m.rps)
                            )
        finally:
            gw.stop()
    print(f"\nthe gateway on two gRPC servers, {args.rounds} rounds, median (lowest to highest):")
    for (side, call, in_flight), runs in sorted(found.items(), key=lambda kv: kv[0][1:]):
        cpu = [c for c, _ in runs]
        print(
            f"  {call:>6} {in_flight:>2} in flight {side:>8}: CPU ms/call "
            f"{statistics.median(cpu):.3f} ({min(cpu):.3f} to {max(cpu):.3f}), "
            f"req/s {statistics.median(r for _, r in runs):.0f}"
        )
    return 0


def main() -> int:
    if sys.argv[1:2] == ["--child"]:  # `python THIS --child -m modelyard.cli serve ...`
        serve_child(sys.argv[4:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=3000, help="calls per run at 32")
    parser.add_argument("--in-flight", type=int, default=32)
    return measure(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
