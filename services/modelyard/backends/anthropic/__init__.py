"""The `anthropic` backend: Claude models through Anthropic's Messages API."""
