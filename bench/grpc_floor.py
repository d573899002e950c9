"""The floor under any grpc.aio gateway: what a bare server costs per call here.

A grpc.aio server (the same grpcio, protobuf and event loop the gateway runs on)
answers modelyard.v1.GatewayService Generate and GenerateStream with a canned
answer, the one the fake upstream's gives the gateway, and nothing else: no
interceptor, no validation, no backend call. The Go load generator drives it as
it drives the gateway (bench/gateway_overhead.py), and the server's CPU per call
is read from /proc around the measured calls. What the gateway costs above this
is its own work; this much is grpc.aio's and cannot be cut without another server.

``--shape proxy`` adds the one thing no gateway can leave out: each call is sent to
the fake upstream (bench/fake_openai_upstream.py, started here) with the gateway's own
HTTP client and stream reader, and answered with its text. What the gateway costs
above that is everything it does besides passing the call on.

``--shape grpclib`` is the bare server on another gRPC implementation: grpclib, pure
Python over h2 on the same event loop (no C core, no poller thread), answering the
same canned answer. It shows how much of the floor is grpc.aio's own;
``--shape grpclib-proxy`` is that server making the proxy's upstream call.

    .venv/bin/python bench/grpc_floor.py --rounds 3 --chunks 2
    .venv/bin/python bench/grpc_floor.py --rounds 3 --shape proxy
    .venv/bin/python bench/grpc_floor.py --rounds 3 --chunks 1 --shape grpclib
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_openai_upstream import UpstreamProcess
from gateway_overhead import EXPECTED, MAX_TOKENS, PROMPT, build_go_loadgen, free_port, go_run

from modelyard_client.v1 import common_pb2, gateway_pb2

MODEL = "custom/fake-gpt"


def serve(port: int, chunks: int, shape: str, upstream: str | None = None) -> None:
    """The bare server, in this process until it is killed. `shape`: "bare", or
    "intercepted" (a pass-through server interceptor that builds each call's handler, as
    modelyard's does) or "writer" (that, and the stream written by `context.write` from a
    reader/writer handler, as `server/slow_readers.write_all` does) or "proxy" (no
    interceptor; each call POSTs the chat completion to the fake `upstream` with the
    gateway's own HTTP client and stream reader, `Http1Pool` and `ChatStream`, and
    answers with the text read: the floor under a Python gateway that calls out)."""
    import grpc

    usage = common_pb2.Usage(input_tokens=9, output_tokens=6)
    stop = common_pb2.FINISH_REASON_STOP
    texts = [EXPECTED] if chunks <= 1 else [EXPECTED[:5], EXPECTED[5:]] + [""] * (chunks - 2)

    async def generate(request: bytes, context: object) -> gateway_pb2.GenerateResponse:
        return gateway_pb2.GenerateResponse(
            model_id=MODEL, text=EXPECTED, finish_reason=stop, usage=usage
        )

    async def generate_stream(
        request: bytes, context: object
    ) -> AsyncIterator[gateway_pb2.GenerateChunk]:
        last = len(texts) - 1
        for i, text in enumerate(texts):
            if i == last:
                yield gateway_pb2.GenerateChunk(text=text, finish_reason=stop, usage=usage)
            elif i == 0:
                yield gateway_pb2.GenerateChunk(model_id=MODEL, text=text)
            else:
                yield gateway_pb2.GenerateChunk(text=text)

    if shape.endswith("proxy"):
        assert upstream is not None
        generate, generate_stream = _proxied(upstream, usage, stop)
    if shape.startswith("grpclib"):
        _serve_grpclib(port, generate, generate_stream)
        return

    parse = gateway_pb2.GenerateRequest.FromString
    write = gateway_pb2.GenerateChunk.SerializeToString
    floor = grpc.method_handlers_generic_handler(
        "modelyard.v1.GatewayService",
        {
            "Generate": grpc.unary_unary_rpc_method_handler(
                generate, parse, gateway_pb2.GenerateResponse.SerializeToString
            ),
            "GenerateStream": grpc.unary_stream_rpc_method_handler(generate_stream, parse, write),
        },
    )

    class PassThrough(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # grpc-stubs
        async def intercept_service(self, continuation, details):  # type: ignore[no-untyped-def]
            handler = await continuation(details)
            if handler is None or handler.unary_stream is None or shape != "writer":
                return handler
            behaviour = handler.unary_stream

            async def written(request, context):  # type: ignore[no-untyped-def]
                async for item in behaviour(request, context):
                    await context.write(item)

            return grpc.unary_stream_rpc_method_handler(
                written,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )

    async def main() -> None:
        intercepted = shape in ("intercepted", "writer")
        server = grpc.aio.server(interceptors=[PassThrough()] if intercepted else [])
        server.add_generic_rpc_handlers((floor,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        print("serving", flush=True)
        await server.wait_for_termination()

    asyncio.run(main())


def _serve_grpclib(port: int, generate: Any, generate_stream: Any) -> None:
    """The same two methods served by grpclib (pure Python over h2), until killed."""
    from grpclib.const import Cardinality, Handler
    from grpclib.server import Server, Stream

    async def unary(stream: Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        await stream.send_message(await generate(request, stream))

    async def streamed(stream: Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        async for chunk in generate_stream(request, stream):
            await stream.send_message(chunk)

    class Floor:
        def __mapping__(self) -> dict[str, Handler]:
            service = "/modelyard.v1.GatewayService"
            request, response = gateway_pb2.GenerateRequest, gateway_pb2.GenerateResponse
            return {
                f"{service}/Generate": Handler(unary, Cardinality.UNARY_UNARY, request, response),
                f"{service}/GenerateStream": Handler(
                    streamed, Cardinality.UNARY_STREAM, request, gateway_pb2.GenerateChunk
                ),
            }

    async def main() -> None:
        server = Server([Floor()])
        await server.start("127.0.0.1", port)
        print("serving", flush=True)
        await server.wait_closed()

    asyncio.run(main())


def _proxied(
    upstream: str, usage: common_pb2.Usage, stop: common_pb2.FinishReason.ValueType
) -> tuple[Any, Any]:
    """Generate and GenerateStream that make the upstream call as the gateway does (one
    pooled keep-alive connection per call in flight, the body read by `ChatStream`), and
    nothing else: no validation, keys, limits, selection, metrics or audit."""
    import msgspec

    from modelyard.backends.http1 import Http1Pool
    from modelyard.backends.openai_compat.chat_stream import ChatStream

    pool: list[Http1Pool] = []
    headers = {"Content-Type": "application/json"}

    async def text_of(request: gateway_pb2.GenerateRequest) -> str:
        if not pool:
            pool.append(Http1Pool(upstream + "/v1"))
        body = {
            "model": "fake-gpt",
            "messages": [{"role": "user", "content": request.input.text}],
            "max_tokens": request.params.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        resp = await pool[0].post("/chat/completions", msgspec.json.encode(body), headers, 30.0)
        async with resp:
            stream = ChatStream("fake", MODEL)
            return "".join([piece.text async for piece in stream.pieces(resp.iter_any())])

    async def generate(
        request: gateway_pb2.GenerateRequest, context: object
    ) -> gateway_pb2.GenerateResponse:
        text = await text_of(request)
        return gateway_pb2.GenerateResponse(
            model_id=MODEL, text=text, finish_reason=stop, usage=usage
        )

    async def generate_stream(
        request: gateway_pb2.GenerateRequest, context: object
    ) -> AsyncIterator[gateway_pb2.GenerateChunk]:
        text = await text_of(request)
        yield gateway_pb2.GenerateChunk(model_id=MODEL, text=text, finish_reason=stop, usage=usage)

    return generate, generate_stream


def measure(args: argparse.Namespace) -> int:
    binary = build_go_loadgen()
    port = free_port()
    argv = [sys.executable, __file__, "--serve", str(port), "--chunks", str(args.chunks)]
    upstream = UpstreamProcess() if args.shape.endswith("proxy") else None
    if upstream is not None:
        argv += ["--upstream", upstream.url]
    child = subprocess.Popen(
        [*argv, "--shape", args.shape],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "serving":
            raise RuntimeError("the bare server did not start")
        cpu: dict[str, list[float]] = {"stream": [], "unary": []}
        rps: dict[str, list[float]] = {"stream": [], "unary": []}
        for _ in range(args.rounds):
            for call in ("stream", "unary"):
                cmd = [str(binary), "-call", call, "-addr", f"127.0.0.1:{port}", "-model", MODEL]
                cmd += ["-prompt", PROMPT, "-max-tokens", str(MAX_TOKENS), "-warmup", "500"]
                cmd += ["-expect-text", EXPECTED, "-expect-finish", "stop"]
                m = go_run(f"bare {call}", cmd, args.in_flight, args.requests, {"gw": child.pid})
                if m.errors:
                    raise RuntimeError(f"{m.errors} errors: {m.first_error}")
                cpu[call].append(m.cpu_ms_per_req["gw"])
                rps[call].append(m.rps)
                print(f"bare {call}: {m.summary()}", flush=True)
                time.sleep(0.2)
        server = args.shape if args.shape.startswith("grpclib") else f"{args.shape} grpc.aio"
        print(f"\n{server} server, {args.in_flight} in flight, {args.rounds} rounds:")
        for call in ("stream", "unary"):
            print(
                f"  {call}: CPU ms/call median {statistics.median(cpu[call]):.3f} "
                f"({min(cpu[call]):.3f} to {max(cpu[call]):.3f}), "
                f"req/s median {statistics.median(rps[call]):.0f}"
            )
    finally:
        child.kill()
        child.wait()
        if upstream is not None:
            upstream.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--chunks", type=int, default=2, help="GenerateChunks per stream")
    shapes = ("bare", "intercepted", "writer", "proxy", "grpclib", "grpclib-proxy")
    parser.add_argument("--shape", choices=shapes, default="bare")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.chunks, args.shape, args.upstream)
        return 0
    return measure(args)


if __name__ == "__main__":
    sys.exit(main())
