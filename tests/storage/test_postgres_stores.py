"""The stores on a real PostgreSQL: writers in several connections at once, a write that
fails part way, a dropped connection, and a URL that is wrong or names no server.

Each connection here stands for a process: PostgreSQL sees separate sessions
either way, and the stores' write lock is the server's (an advisory lock), not
the process's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
import pytest
from conftest import free_port

from modelyard.gateway.conversations import ConversationStore
from modelyard.hotswap.store import HotSwapStore
from modelyard.registry.catalog import Catalog
from modelyard.registry.store import CatalogStore
from modelyard.storage import DatabaseUrl
from modelyard_client.errors import BackendUnavailable, InvalidRequest
from modelyard_client.scrub import MARKER
from modelyard_client.v1 import common_pb2, hotswap_pb2, registry_pb2

WRITERS, EACH = 4, 25
UPSERTED = registry_pb2.ModelChange.KIND_UPSERTED


def _all_at_once(work: Callable[[int], None], count: int = WRITERS) -> None:
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            start.wait()
            work(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []


def test_catalog_writers_in_several_connections_get_distinct_revisions_in_commit_order(
    postgres_url: DatabaseUrl,
) -> None:
    stores = [CatalogStore(postgres_url) for _ in range(WRITERS)]
    got: dict[int, list[int]] = {n: [] for n in range(WRITERS)}

    def write(n: int) -> None:
        for i in range(EACH):
            entry = common_pb2.ModelEntry(id=f"w{n}/m{i}", provider=f"w{n}", version="1")
            entry.revision = stores[n].next_revision()  # a guess others overtake
            got[n].append(stores[n].write_change(UPSERTED, entry))

    _all_at_once(write)
    revisions = sorted(r for rs in got.values() for r in rs)
    assert revisions == list(range(1, WRITERS * EACH + 1))
    assert all(rs == sorted(rs) for rs in got.values())
    changes = stores[0].changes_after(0)
    assert [c.revision for c in changes] == revisions
    # every stored copy carries the revision it got, not the one it guessed
    assert all(c.model.revision == c.revision for c in changes)
    assert {e.id: e.revision for e in stores[0].load_all()} == {
        c.model.id: c.revision for c in changes
    }
    assert all(v.revision for c in changes for v in stores[0].versions(c.model.id))
    assert len({s.catalog_id for s in stores}) == 1
    for store in stores:
        store.close()


def test_route_writers_in_several_connections_never_share_a_revision(
    postgres_url: DatabaseUrl,
) -> None:
    stores = [HotSwapStore(postgres_url) for _ in range(WRITERS)]
    got: list[int] = []

    def write(n: int) -> None:
        for i in range(EACH):
            route = hotswap_pb2.Route(model_id=f"local/m{i}")
            got.append(stores[n].put(f"alias-{n}-{i}", route).revision)
            stores[n].put_test(hotswap_pb2.ABTest(id=f"t{n}-{i}"))

    _all_at_once(write)
    assert sorted(got) == list(range(1, WRITERS * EACH + 1))
    assert stores[0].revision() == WRITERS * EACH
    assert sorted(r.revision for _, r in stores[0].load_all()) == sorted(got)
    assert len(list(stores[0].load_tests())) == WRITERS * EACH
    for store in stores:
        store.close()


def test_turns_added_through_several_connections_to_one_conversation_are_all_kept(
    postgres_url: DatabaseUrl,
) -> None:
    stores = [ConversationStore(postgres_url) for _ in range(WRITERS)]

    def talk(n: int) -> None:
        for i in range(EACH):
            message = common_pb2.ChatMessage(role="user", content=f"{n}:{i}")
            stores[n].add_turn("shared", "be brief" if i == 0 else None, [message])

    _all_at_once(talk)
    turns = stores[0].turns("shared")
    assert sorted(t[0].content for t in turns) == sorted(
        f"{n}:{i}" for n in range(WRITERS) for i in range(EACH)
    )
    for n in range(WRITERS):  # each writer's own turns, in the order it added them
        mine = [t[0].content for t in turns if t[0].content.startswith(f"{n}:")]
        assert mine == [f"{n}:{i}" for i in range(EACH)]
    assert stores[1].system("shared") == "be brief"
    for store in stores:
        store.close()


def test_a_catalog_write_that_fails_part_way_on_postgresql_leaves_nothing_behind(
    postgres_url: DatabaseUrl,
) -> None:
    catalog = Catalog(CatalogStore(postgres_url))
    with psycopg.connect(postgres_url.url, autocommit=True) as other:
        other.execute(
            "CREATE FUNCTION registry.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.id = 'local/bad' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$"
        )
        other.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON registry.models "
            "FOR EACH ROW EXECUTE FUNCTION registry.refuse()"
        )
    bad = common_pb2.ModelEntry(id="local/bad", provider="local", version="1")
    bad.deployments.add(backend="local", endpoint="127.0.0.1:7000")
    with pytest.raises(psycopg.errors.RaiseException, match="refused"):
        catalog.register(bad, upsert=False)
    assert (catalog.revision, catalog.store.changes_after(0)) == (0, [])
    assert catalog.store.versions("local/bad") == []
    good = common_pb2.ModelEntry(id="local/good", provider="local")
    good.deployments.add(backend="local", endpoint="127.0.0.1:7000")
    # the failed write's revision was handed out (a sequence is not rolled back): a gap
    assert catalog.register(good, upsert=False).revision == 2
    assert [c.revision for c in catalog.store.changes_after(0)] == [2]
    catalog.close()


def test_a_connection_the_server_dropped_is_opened_again(postgres_url: DatabaseUrl) -> None:
    store = HotSwapStore(postgres_url)
    store.put("chat", hotswap_pb2.Route(model_id="local/a"))
    with psycopg.connect(postgres_url.url, autocommit=True) as admin:
        (ended,) = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'modelyard-hotswap'"
        ).fetchone() or (0,)
    assert ended == 1
    with pytest.raises(psycopg.OperationalError):
        store.revision()  # the statement the drop cut fails...
    assert store.put("code", hotswap_pb2.Route(model_id="local/b")).revision == 2  # ...then on
    store.close()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("mysql://u:hunter2@db/x", "is not a PostgreSQL URL"),
        ("postgresql://u:hunter2@db:port/x", "is not a URL"),
        ("postgresql://u:hunter2@db:5432", "names no database"),
    ],
)
def test_a_bad_url_is_refused_naming_the_variable_and_not_the_password(
    text: str, says: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        DatabaseUrl.parse(text)
    message = str(refused.value)
    assert message.startswith("MODELYARD_DATABASE_URL / server.database_url: ")
    assert says in message and "hunter2" not in message
    assert refused.value.field == "server.database_url"


def test_a_server_that_is_not_there_is_named_without_its_password() -> None:
    url = DatabaseUrl.parse(f"postgresql://modelyard:s3cret-pw@127.0.0.1:{free_port()}/x")
    assert "s3cret-pw" not in f"{url} {url!r}"
    with pytest.raises(BackendUnavailable) as refused:
        CatalogStore(url)
    message = str(refused.value)
    assert message.startswith(
        "MODELYARD_DATABASE_URL / server.database_url: cannot connect to PostgreSQL at "
        f"postgresql://modelyard:{MARKER}@127.0.0.1:"
    )
    assert "s3cret-pw" not in message and "Connection refused" in message
