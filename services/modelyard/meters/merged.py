"""The metrics of `up --workers N` as one scrape: every process's series, each labelled.

The primary's ``GET /metrics`` holds its own series and those of each gateway worker
(read from the worker's private metrics listener at scrape time), every series with a
``worker`` label: ``"0"`` for the primary, ``"1"`` … for the workers. A family's
``HELP``/``TYPE`` comes once, its samples from every process together, so
``sum without (worker) (…)`` is the host's total and each process stays visible.
A worker that does not answer within `SCRAPE_TIMEOUT_S` is left out of that scrape
(and logged); its series come back with the next one that reaches it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator, Sequence

import aiohttp
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

WORKER_LABEL = "worker"
PRIMARY = "0"
SCRAPE_TIMEOUT_S = 2.0


def merged_exposition(processes: Sequence[tuple[str, bytes]]) -> bytes:
    """The Prometheus text of `processes` ((worker label, its own text), in order) as one:
    each family once, each sample with its process's `WORKER_LABEL`."""
    families: dict[str, Metric] = {}
    for worker, text in processes:
        for family in text_string_to_metric_families(text.decode()):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
            for sample in family.samples:
                labels = {WORKER_LABEL: worker, **sample.labels}
                merged.add_sample(sample.name, labels, sample.value)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families.values()))
    return generate_latest(registry)


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        yield from self._families


async def scrape(
    session: aiohttp.ClientSession, workers: Sequence[tuple[str, str]]
) -> list[tuple[str, bytes]]:
    """Each worker's own text ((worker label, its metrics URL)), those that answered."""

    async def one(worker: str, url: str) -> tuple[str, bytes] | None:
        try:
            timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)
            async with session.get(url, timeout=timeout) as resp:
                resp.raise_for_status()
                return worker, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("gateway worker %s's metrics at %s: %s; left out", worker, url, exc)
            return None

    found = await asyncio.gather(*(one(worker, url) for worker, url in workers))
    return [f for f in found if f is not None]
