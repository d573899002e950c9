"""Cohere's Chat v2 API (``POST /v2/chat``, streamed) as a modelyard engine."""
