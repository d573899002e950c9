"""How big a catalog entry and each of its fields may be: the registry's one table of bounds.

Every consumer reads the catalog through gRPC messages: the gateway's and the
selector's `WatchModels` (one entry a message), a backend's `RegisterModel`
(the entry comes back), `ListModels`. An entry too big for one of them does
not fail one call: the watch fails on it again at every retry, and that
gateway stops following the catalog. So the registry refuses, on every write,
an entry over `ENTRY_BYTES` or a field over its bound, and every consumer's
channel takes messages up to `RECEIVE_BYTES`, the registry server's own
message limit (`modelyard.server.runtime.MAX_MESSAGE_BYTES`), far above any
entry the registry now stores, so an entry stored before these bounds still
arrives. The numbers are repeated in the comments of ``ModelEntry`` in
``proto/modelyard/v1/common.proto``; ``tests/registry/test_entry_limits.py``
checks that they agree.

Lengths count characters (what ``len`` counts), the entry its encoded bytes.
"""

from __future__ import annotations

from typing import Any, Final

# ---- ids and versions (the rule itself is `modelyard.catalog_ids`) ----------
# Longest real ids (Hugging Face repositories with a quantization suffix) are
# under 120 characters; a backend name is a configuration key.
ID_CHARS: Final = 255
BACKEND_NAME_CHARS: Final = 63
# A semantic version, a date, a digest ("sha256:" and 64 hex digits).
VERSION_CHARS: Final = 128

# ---- the other fields of a `ModelEntry` -------------------------------------
NAME_CHARS: Final = 255
PROVIDER_CHARS: Final = 63
SCHEMA_JSON_CHARS: Final = 65_536  # each of input_schema_json, output_schema_json
HEALTH_REASON_CHARS: Final = 1_024  # longer reasons given to UpdateHealth are cut
QUALITY_SUITE_CHARS: Final = 128  # the name of the evaluation suite behind `quality`
METADATA_ENTRIES: Final = 64
METADATA_KEY_CHARS: Final = 128
# A file path, or a GGUF file's `general.license`, which some files hold in full.
METADATA_VALUE_CHARS: Final = 16_384
# Each of capabilities, input_modalities, output_modalities (the enums have 6-14 values).
ENUM_ENTRIES: Final = 32
DEPLOYMENTS: Final = 256  # one per serving backend process
DEPLOYMENT_BACKEND_CHARS: Final = 63
ENDPOINT_CHARS: Final = 261  # a 253-character host name, ':' and a port, or [IPv6]:port
REGION_CHARS: Final = 63
# The whole entry, encoded: a few KiB in practice.
ENTRY_BYTES: Final = 256 * 1024

# ---- providers (`AddProvider`) ----------------------------------------------
PROVIDER_KIND_CHARS: Final = 63
PROVIDER_ENDPOINT_CHARS: Final = 2_048

# ---- what consumers accept ----------------------------------------------------
# Equal to the registry server's message limit: whatever it sent, a consumer reads. Every
# channel that reads catalog entries (catalog view, announce, CLI, client) takes
# `modelyard_client.channel.CHANNEL_OPTIONS` (`RECEIVE_BYTES`): the client package holds
# the bound, so a client on its own reads whatever the server sends.


def context_window(value: Any) -> int:
    """A context length from an upstream answer as a catalog `context_window` (0 if unknown;
    at most the largest the field holds, a uint32)."""
    try:
        count = int(value)
    except (TypeError, ValueError):
        return 0
    return max(0, min(count, 2**32 - 1))
