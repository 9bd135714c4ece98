"""A real SLURM for the job-queue tests (see slurm_testbed.py); skipped with
the reason without root or without Debian's munge and slurm-wlm."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.jobqueue.slurm_testbed import SlurmTestbed, missing


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmTestbed]:
    why = missing()
    if why is not None:
        pytest.skip(why)
    testbed = SlurmTestbed().start()
    try:
        yield testbed
    finally:
        testbed.stop()
