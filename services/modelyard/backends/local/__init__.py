"""The `local` backend: llama.cpp in process over GGUF files in a models directory."""
