"""The `openai_compat` backend: any endpoint that speaks OpenAI's chat completions."""
