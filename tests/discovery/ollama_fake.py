"""A fake Ollama daemon for discovery tests, answering as Ollama's API docs describe.

`GET /api/tags`, `POST /api/show` and `GET /api/ps` with the documented field
names (docs/api.md and docs/openapi.yaml of ollama/ollama): tags list `name`,
`model`, `modified_at`, `size`, `digest`, `details`; show answers `parameters`,
`license`, `modified_at`, `details`, `template`, `capabilities`, `model_info`;
ps lists `name`, `model`, `size`, `digest`, `details`, `expires_at`,
`size_vram`, `context_length`. Errors are ``{"error": "..."}`` with an HTTP
status, as Ollama sends them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class FakeModel:
    name: str  # "<model>:<tag>"
    family: str
    parameter_size: str
    quantization_level: str
    size: int
    digest: str
    capabilities: list[str] | None  # None: an old daemon that does not report them
    context_length: int
    parameters: str = ""
    extra_info: dict[str, Any] = field(default_factory=dict)

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }


def default_models() -> list[FakeModel]:
    return [
        FakeModel(
            "gemma3:270m", "gemma3", "268.10M", "Q8_0", 291_554_930,
            "e7d36fb2c3b3" + "0" * 52, ["completion"], 32768,
            parameters='stop "<end_of_turn>"\ntemperature 1\ntop_k 64',
        ),
        FakeModel(
            "llava:7b", "llama", "7B", "Q4_0", 4_733_363_377,
            "8dd30f6b0cb1" + "1" * 52, ["completion", "vision"], 32768,
            extra_info={"llama.vision.block_count": 24},
        ),
        FakeModel(
            "nomic-embed-text:latest", "nomic-bert", "137M", "F16", 274_302_450,
            "0a109f422b47" + "2" * 52, ["embedding"], 2048,
        ),
        FakeModel(
            "qwen3:8b", "qwen3", "8.2B", "Q4_K_M", 5_225_376_047,
            "500a1f067a9f" + "3" * 52, ["completion", "tools", "thinking"], 40960,
            parameters="num_ctx 8192\ntemperature 0.6",
        ),
    ]  # fmt: skip


@dataclass
class FakeOllama:
    models: list[FakeModel] = field(default_factory=default_models)
    loaded: list[str] = field(default_factory=lambda: ["gemma3:270m"])
    # /api/show answers this many requests, then drops every later connection
    # without a response: the daemon stopped answering part way.
    answer_shows: int | None = None
    show_errors: dict[str, tuple[int, str]] = field(default_factory=dict)  # name -> (status, msg)
    ps_status: int = 200
    shows: list[str] = field(default_factory=list)  # model names /api/show was asked for
    url: str = ""
    _runner: web.AppRunner | None = None

    def _find(self, name: str) -> FakeModel | None:
        wanted = name if ":" in name else f"{name}:latest"
        return next((m for m in self.models if m.name == wanted), None)

    async def _tags(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "models": [
                    {
                        "name": m.name,
                        "model": m.name,
                        "modified_at": "2025-10-03T23:34:03.409490317-07:00",
                        "size": m.size,
                        "digest": m.digest,
                        "details": m.details(),
                    }
                    for m in self.models
                ]
            }
        )

    async def _show(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        name = str(body.get("model") or body.get("name") or "")
        self.shows.append(name)
        if self.answer_shows is not None and len(self.shows) > self.answer_shows:
            assert request.transport is not None
            request.transport.close()
            return web.Response()  # never sent: the connection is gone
        if name in self.show_errors:
            status, message = self.show_errors[name]
            return web.json_response({"error": message}, status=status)
        model = self._find(name)
        if model is None:
            return web.json_response({"error": f"model '{name}' not found"}, status=404)
        answer: dict[str, Any] = {
            "license": "test license",
            "modified_at": "2025-08-14T15:49:43.634137516-07:00",
            "template": "{{ .Prompt }}",
            "parameters": model.parameters,
            "details": model.details(),
            "model_info": {
                "general.architecture": model.family,
                "general.file_type": 15,
                "general.parameter_count": 268_098_176,
                "general.quantization_version": 2,
                f"{model.family}.context_length": model.context_length,
                f"{model.family}.embedding_length": 640,
                "tokenizer.ggml.model": "llama",
                "tokenizer.ggml.tokens": None,
                **model.extra_info,
            },
        }
        if model.capabilities is not None:
            answer["capabilities"] = model.capabilities
        return web.json_response(answer)

    async def _ps(self, request: web.Request) -> web.Response:
        if self.ps_status != 200:
            return web.json_response({"error": "ps failed"}, status=self.ps_status)
        running = [m for m in self.models if m.name in self.loaded]
        return web.json_response(
            {
                "models": [
                    {
                        "name": m.name,
                        "model": m.name,
                        "size": m.size + 100_000_000,
                        "digest": m.digest,
                        "details": m.details(),
                        "expires_at": "2025-10-17T16:47:07.93355-07:00",
                        "size_vram": m.size,
                        "context_length": 4096,
                    }
                    for m in running
                ]
            }
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/tags", self._tags)
        app.router.add_post("/api/show", self._show)
        app.router.add_get("/api/ps", self._ps)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
