"""The bounds `security.input_limits` sets (`gateway/request_limits.py`'s `_configured`),
built as mutation testing needs to see them (docs/testing.md, the eighth session,
second part).

`_configured` runs only while the module is imported, to fill `LIMITS`; mutmut imports
the tests before it picks a mutant, so the doc and walk tests over `LIMITS` never met one
of its mutants. Here it is called while the test runs: a bound holds its setting's
default, the characters bound it was given, and the setting's name.
"""

from __future__ import annotations

from modelyard.gateway.request_limits import LIMITS, MODEL_ID_CHARS, Bound, _configured


def test_a_configured_bound_holds_its_settings_default_its_characters_and_the_setting() -> None:
    assert _configured("max_compare_models", chars=MODEL_ID_CHARS) == Bound(
        entries=64, chars=256, setting="max_compare_models"
    )
    assert _configured("max_messages") == Bound(entries=4_096, setting="max_messages")
    assert _configured("max_batch_items") == Bound(entries=64, setting="max_batch_items")


def test_the_table_holds_the_configured_bounds_as_built_now() -> None:
    assert LIMITS["modelyard.v1.CompareRequest.models"] == _configured(
        "max_compare_models", chars=MODEL_ID_CHARS
    )
    assert LIMITS["modelyard.v1.ChatMessages.messages"] == _configured("max_messages")
    assert LIMITS["modelyard.v1.BatchGenerateRequest.requests"] == _configured("max_batch_items")
