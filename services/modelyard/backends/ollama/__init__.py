"""The native Ollama engine: ``/api/chat`` through the official `ollama` client.

`engine` is the engine (generation, load and unload by ``keep_alive``, what
``/api/ps`` says is loaded), `chat_request` turns an `Input` and its
`GenerationParams` into Ollama's chat request, `answer` reads the NDJSON
answer into `Piece`s, `failures` maps what goes wrong to the error hierarchy,
`model_entry` is a pulled model's catalog entry (discovery's too).
"""
