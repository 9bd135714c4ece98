"""Which of a client's queued messages leave now, and which wait for company.

Theory of operation
-------------------
A client session queues its messages to the scheduler in order and sends
them from its event loop (:mod:`taskmill.client.session`).  Most are urgent:
a submission should reach the scheduler at once.  A ``release-keys`` is not:
the key's Future was collected and nobody waits for its memory to be freed.
Handled in front of the next submission (in the same batch), a release sat
on the lone call's path: the scheduler's machine forgot the key, wrote
``free-keys`` with the ``compute-task`` and the worker freed the key before
it started the call, all between the user's ``submit`` and its result.

So an urgent flush sends the messages *without* the releases
(:func:`hold_releases`), as long as doing so cannot change what the
scheduler makes of them: a release is held past an ``update-graph`` only
when that graph neither defines, nor wants, nor depends on any key held back
(a key submitted again after its release must be released first, or the
release would drop the new Future's claim).  Any other message, or a graph
naming a held key, sends the held releases ahead of it, in order.  The held
releases go out with the session's release timer (``RELEASE_DELAY``), many
folded into one message (:func:`merge_releases`): one handling of the
scheduler and one ``free-keys`` to a worker for a burst of calls instead of
one per call, and none on a call's path.

A big graph leaves in chunks, one per loop turn (:func:`chunk_length`), so
that the loop answers others between them.
"""

from __future__ import annotations

from taskmill.protocol.vocabulary import Message, ReleaseKeys, UpdateGraph


def _names_any(graph: UpdateGraph, keys: set[str]) -> bool:
    """Whether ``graph`` defines, wants or depends on any of ``keys``."""
    if not keys.isdisjoint(graph.wanted):
        return True
    return any(t.key in keys or not keys.isdisjoint(t.dependencies) for t in graph.tasks)


def hold_releases(msgs: list[Message]) -> tuple[list[Message], list[Message]]:
    """Split ``msgs`` (in order) into those to send now and the releases that
    may wait for the release timer (see the module docstring)."""
    now: list[Message] = []
    held: list[Message] = []
    held_keys: set[str] = set()
    for msg in msgs:
        if isinstance(msg, ReleaseKeys):
            held.append(msg)
            held_keys.update(msg.keys)
            continue
        if held and not (isinstance(msg, UpdateGraph) and not _names_any(msg, held_keys)):
            now.extend(held)  # this message must come after them
            held, held_keys = [], set()
        now.append(msg)
    return now, held


def chunk_length(outbox: list[Message], tasks: int) -> int:
    """How many of the first messages of ``outbox`` to send in one loop turn:
    about ``tasks`` tasks' worth (a message other than a graph counts one, a
    release none: releases are folded into one message)."""
    take, budget = 0, 0
    for msg in outbox:
        take += 1
        if isinstance(msg, UpdateGraph):
            budget += len(msg.tasks)
        elif not isinstance(msg, ReleaseKeys):
            budget += 1
        if budget >= tasks:
            break
    return take


def merge_releases(msgs: list[Message]) -> list[Message]:
    """Fold runs of consecutive ``release-keys`` messages into one (order kept)."""
    out: list[Message] = []
    run: list[str] = []
    for msg in msgs:
        if isinstance(msg, ReleaseKeys):
            run.extend(msg.keys)
            continue
        if run:
            out.append(ReleaseKeys("", "", tuple(run)))  # client: filled in by the scheduler
            run = []
        out.append(msg)
    if run:
        out.append(ReleaseKeys("", "", tuple(run)))
    return out
