"""A provider's, a version's and a quoted id's refusals, each whole: message and field.

Kills the second mutmut run's survivors in `registry.providers.Providers.add`,
`registry.versions.ModelVersions` and `registry.validation._quoted`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.registry.catalog import Catalog
from modelyard.registry.providers import Providers
from modelyard.registry.store import CatalogStore
from modelyard.registry.validation import check_model_id
from modelyard.registry.versions import ModelVersions
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2, registry_pb2


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    catalog = Catalog(CatalogStore(tmp_path / "registry.sqlite3"))
    yield catalog
    catalog.close()


def _refusal(call: object, *args: object, **kw: object) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        call(*args, **kw)  # type: ignore[operator]
    return info.value


@pytest.mark.parametrize(
    ("kind", "endpoint", "message", "field"),
    [
        ("", "http://x", "provider 'p': kind must not be empty", "kind"),
        ("open ai", "http://x", "provider 'p': kind holds ' ' (U+0020)", "kind"),
        ("openai", "http://a b", "provider 'p': endpoint holds ' ' (U+0020)", "endpoint"),
        (
            "openai",
            "http://" + "e" * 2_042,
            "provider 'p': endpoint is 2049 characters; the limit is 2048",
            "endpoint",
        ),
    ],
)
def test_a_bad_provider_is_refused_naming_the_field(
    catalog: Catalog, kind: str, endpoint: str, message: str, field: str
) -> None:
    providers = Providers(catalog)
    refused = _refusal(providers.add, registry_pb2.Provider(name="p", kind=kind, endpoint=endpoint))
    assert (refused.message, refused.field) == (message, field)
    assert providers.list() == []


def test_a_version_left_empty_or_invalid_is_refused_naming_the_field(catalog: Catalog) -> None:
    versions = ModelVersions(catalog)
    entry = common_pb2.ModelEntry(id="local/a", provider="local")
    refused = _refusal(versions.register, entry, make_current=True)
    assert (refused.message, refused.field) == (
        "model 'local/a': version must not be empty",
        "version",
    )
    bad = _refusal(versions.get, "local/a", "a b")
    assert bad.field == "version"
    assert bad.message.startswith("model 'local/a': version 'a b' is invalid: holds ' ' (U+0020) (")


@pytest.mark.parametrize(
    ("length", "shown"),
    [(80, repr("X" * 80)), (81, repr("X" * 80) + "... (81 characters)")],
)
def test_an_id_is_quoted_whole_up_to_80_characters_and_cut_past_them(
    length: int, shown: str
) -> None:
    refused = _refusal(check_model_id, "X" * length)
    assert refused.message.startswith(f"model id {shown} is invalid: ")
