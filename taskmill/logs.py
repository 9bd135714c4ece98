"""One logging format for every taskmill process."""

from __future__ import annotations

import logging
import os

FORMAT = "%(asctime)s %(levelname)-7s %(name)s (pid %(process)d): %(message)s"


def setup_logging(level: str | int | None = None) -> None:
    """Configure the ``taskmill`` logger (level from the argument, else
    ``TASKMILL_LOG_LEVEL``, else INFO) unless the application already did."""
    level = level or os.environ.get("TASKMILL_LOG_LEVEL", "INFO")
    logger = logging.getLogger("taskmill")
    logger.setLevel(level.upper() if isinstance(level, str) else level)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        logger.addHandler(handler)
