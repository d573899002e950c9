"""Run by tests/clients/test_python_client.py in an interpreter that has only the client.

``python -S`` (no site-packages), `sys.path` the installed client and its three
dependencies, argv[1] a running stack's address. Prints one JSON object of what each
call did; every module loaded must come from those folders or the standard library.
"""

from __future__ import annotations

import asyncio
import json
import sys


def main(address: str) -> dict[str, object]:
    found: dict[str, object] = {}
    try:
        import modelyard  # noqa: F401
    except ModuleNotFoundError:
        found["server_importable"] = False
    else:
        found["server_importable"] = True

    from modelyard_client import AsyncGatewayClient, GatewayClient
    from modelyard_client.errors import InvalidRequest, ModelNotFound

    with GatewayClient(address, timeout_s=30) as client:
        found["models"] = sorted(m.id for m in client.models())
        found["text"] = client.generate("scripted/echo", "hi", max_tokens=8).text
        found["streamed"] = list(client.stream("scripted/echo", "hi", max_tokens=8))
        try:
            client.generate("nope/missing", "hi")
        except ModelNotFound as err:
            found["not_found"] = [type(err).__name__, err.model_id, err.code.name]
        try:
            client.generate("scripted/echo", "hi", max_tokens=-1)
        except InvalidRequest as err:
            found["invalid"] = [type(err).__name__, err.field]

    async def run_async() -> None:
        async with AsyncGatewayClient(address, timeout_s=30) as client:
            found["async_text"] = (await client.generate("scripted/echo", "hi")).text
            found["async_streamed"] = [p async for p in client.stream("scripted/echo", "hi")]
            found["async_models"] = len(await client.models())
            try:
                await client.generate("nope/missing", "hi")
            except ModelNotFound as err:
                found["async_not_found"] = err.model_id

    asyncio.run(run_async())
    found["modules"] = sorted(
        {getattr(m, "__file__", None) or "" for m in list(sys.modules.values())} - {""}
    )
    return found


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
