"""Putting local data on workers: serialize in the caller's thread, ask the
scheduler where to put each item, send each worker its share in one request,
then tell the scheduler which keys the client wants and where the data now
lives, naming each worker's registration as its ``put-data`` answered (each
worker also reports the keys itself; the scheduler reconciles the two)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskmill import timeouts
from taskmill.client.calls import call_token, unique_token
from taskmill.client.future import Future
from taskmill.protocol import Serialized, serialize
from taskmill.protocol.vocabulary import PutData, ScatterDone, ScatterTargets

if TYPE_CHECKING:
    from taskmill.client.session import Session


@dataclass(frozen=True, slots=True)
class ScatterItem:
    key: str
    payload: Serialized
    type_name: str


def scatter_payloads(data: Any, *, hash: bool) -> list[ScatterItem]:
    """Serialize each item to scatter; name it by content (or uniquely)."""
    pairs: list[tuple[str | None, Any]]
    if isinstance(data, dict):
        pairs = [(str(k), v) for k, v in data.items()]
    elif isinstance(data, (list, tuple, set, frozenset)):
        pairs = [(None, v) for v in data]
    else:
        pairs = [(None, data)]
    items = []
    for given_key, value in pairs:
        payload = serialize(value)
        type_name = type(value).__name__
        key = given_key or f"{type_name}-{call_token('scatter', payload) if hash else unique_token()}"
        items.append(ScatterItem(key, payload, type_name))
    return items


async def plan_scatter(session: Session, items: list[ScatterItem], workers: list[str] | None,
                       broadcast: bool) -> list[Future]:
    """Send the items to workers and register them; returns one Future each."""
    session.check_running()
    targets: list[list[str]] = await session.scheduler_call(
        ScatterTargets(len(items), None if workers is None else tuple(workers), broadcast))
    per_worker: dict[str, dict[str, Serialized]] = {}
    for item, where in zip(items, targets):
        for worker in where:
            per_worker.setdefault(worker, {})[item.key] = item.payload
    replies = await asyncio.gather(*(session.worker_call(w, PutData(d, session.id), timeout=timeouts.DATA)
                                     for w, d in per_worker.items()))
    futures = [session.future_class(item.key, session) for item in items]
    session.send(ScatterDone(
        "", session.id,
        who_has={item.key: tuple(where) for item, where in zip(items, targets)},
        nbytes={item.key: item.payload.nbytes for item in items},
        type_names={item.key: item.type_name for item in items},
        incarnations={w: reply["incarnation"] for w, reply in zip(per_worker, replies)},
    ))
    return futures
