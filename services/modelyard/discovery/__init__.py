"""Discovery sources: what models exist where (Ollama, GGUF files, CoreML, OpenAI-compatible, API providers)."""
