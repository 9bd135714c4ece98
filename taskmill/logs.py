"""One logging format for every taskmill process, and the in-memory ring of
recent records that ``Executor.get_scheduler_logs`` / ``get_worker_logs`` read.

The ring (:class:`LogRing`) is one ``logging.Handler`` per process on the
``taskmill`` logger, installed by the first server node (scheduler, worker or
nanny) the process starts: a deque of at most ``logging.length`` records (an
option of :mod:`taskmill.config`, default :data:`RING_SIZE`), oldest dropped
first.  It keeps what the ``taskmill`` loggers let through at their
configured level: INFO in worker processes and the command-line programs
(``setup_logging``), the application's own configuration in a process that
embeds a scheduler or in-process workers (Python's default there is
WARNING).  Nodes of one process (an embedded scheduler with in-process
workers) share its one ring, as they share its loggers.
"""

from __future__ import annotations

import logging
from collections import deque

from taskmill import config, config_checks

FORMAT = "%(asctime)s %(levelname)-7s %(name)s (pid %(process)d): %(message)s"

#: records a process keeps by default.  A formatted line is about 150 bytes,
#: so the ring stays within a few megabytes however long the process runs or
#: however fast a fault repeats a warning; taskmill logs a few lines per worker
#: join, leave or failure, so 10,000 lines cover a long-running cluster's
#: history (dask.distributed keeps the same number, ``admin.log-length``).
RING_SIZE = 10_000

_ring: LogRing | None = None


def setup_logging(level: str | int | None = None) -> None:
    """Configure the ``taskmill`` logger (level from the argument, else
    option ``logging.level``) unless the application already did."""
    level = level or config.read("logging.level", config_checks.log_level)
    logger = logging.getLogger("taskmill")
    logger.setLevel(level.upper() if isinstance(level, str) else level)
    if not [h for h in logger.handlers if not isinstance(h, LogRing)]:  # the ring is ours
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        logger.addHandler(handler)


class LogRing(logging.Handler):
    """A bounded in-memory log: each record kept as (level name, formatted
    line), formatted when it is emitted (so no record's arguments stay alive
    and later changes to them do not show), newest last."""

    def __init__(self, maxlen: int = RING_SIZE) -> None:
        if maxlen < 1:
            raise ValueError(f"a log ring keeps at least one record, not {maxlen}")
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter(FORMAT))
        self.records: deque[tuple[str, str]] = deque(maxlen=maxlen)

    def emit(self, record: logging.LogRecord) -> None:
        """Keep ``record`` (called by ``logging`` under the handler's lock)."""
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.records.append((record.levelname, line))

    def recent(self, n: int | None = None) -> list[tuple[str, str]]:
        """The last ``n`` records kept (None: all of them), oldest first."""
        check_count(n)
        with self.lock:  # type: ignore[union-attr]  # no append while we copy
            records = list(self.records)
        if n is None:
            return records
        return records[len(records) - n:] if n else []


def check_count(n: object) -> None:
    """``n`` of ``get_scheduler_logs`` / ``get_worker_logs``: None or an int >= 0."""
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 0):
        raise ValueError(f"n is the number of most recent log records to return: "
                         f"None (all kept) or an integer >= 0, not {n!r}")


def install_log_ring() -> LogRing:
    """This process's ring on the ``taskmill`` logger (installed on the first
    call; its size from option ``logging.length``, default :data:`RING_SIZE`)."""
    global _ring
    if _ring is None:
        ring = LogRing(config.read("logging.length", config_checks.count))
        logging.getLogger("taskmill").addHandler(ring)
        _ring = ring
    return _ring


def recent_logs(n: int | None = None) -> list[tuple[str, str]]:
    """The last ``n`` records of this process's ring (installing it if needed)."""
    return install_log_ring().recent(n)
