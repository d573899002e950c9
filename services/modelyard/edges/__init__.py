"""HTTP edges: the OpenAI-compatible API over the gateway's own calls (`http_edge.py`)."""
