"""The work-stealing ops of the wire vocabulary.

Theory of operation
-------------------
Part of the vocabulary of :mod:`taskmill.protocol.vocabulary`, which imports
this module at its end and re-exports its classes.  Moving a task that the
scheduler already sent to one worker (the *victim*) to another (the *thief*)
is a handshake on the victim's stream, so the task never runs twice and is
never lost (see :mod:`taskmill.core.scheduler.stealing`):

* ``steal-request`` (scheduler -> victim): give ``key`` back if its call has
  not started.  It carries the scheduler's ``epoch`` like every scheduler
  message on a worker's stream.
* ``steal-response`` (victim -> scheduler): ``stolen`` True when the worker
  released the task before it started (it will not run it), False when it
  keeps it (running, finished, failed, or not known there).  ``seen`` is the
  ``epoch`` of the request it answers, so the scheduler matches the answer
  to its request and recognises one that crossed a ``free-keys`` of the key.

The scheduler moves the task to the thief only on ``stolen=True``.
"""

from __future__ import annotations

from taskmill.frozen import frozen
from taskmill.protocol.wire_types import SCHEDULER, WORKER, Address, Key, Message, message

__all__ = ["StealRequest", "StealResponse"]


@message("steal-request", SCHEDULER, WORKER, local=("worker",))
@frozen
class StealRequest(Message):
    """Give task ``key`` back unless its call has started; answered with
    ``steal-response``."""

    stimulus_id: str
    worker: Address
    key: Key
    epoch: int = 0


@message("steal-response", WORKER, SCHEDULER, local=("worker", "stimulus_id"))
@frozen
class StealResponse(Message):
    """The answer to the ``steal-request`` of ``epoch`` ``seen``: with
    ``stolen`` the worker released ``key`` before it started (the scheduler
    sends it elsewhere); without, the worker keeps it."""

    stimulus_id: str
    worker: Address
    key: Key
    stolen: bool
    seen: int = 0
