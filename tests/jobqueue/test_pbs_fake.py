"""PBSCluster against a *fake* PBS: qsub, qstat and qdel written by this test.

There is no real PBS on the test machine.  The fakes do what the cluster
relies on, the way PBS Pro answers: ``qsub SCRIPT`` starts the script in the
background (its output, stdout and stderr joined, to the ``#PBS -o`` file)
and prints ``N.fakepbs``; it refuses a script asking for queue ``nosuch``;
``qstat IDS`` lists the live ones (state in the fifth column) and says
"Job has finished" (or "Unknown Job Id") on stderr for the others; ``qdel ID`` sends SIGTERM to the
job's process group.  What this proves: the cluster's scripts run, its
commands are called and their answers read as PBS gives them; not that a
real PBS server accepts every directive.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from taskmill import Executor
from taskmill.cluster.jobqueue import PBSCluster
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(120)

QSUB = r"""#!/usr/bin/env bash
set -e
script="$1"
if [ -n "$FAKE_QSUB_GATE" ]; then  # a slow submission: wait until the test opens the gate
    touch "$FAKE_QSUB_GATE.waiting"
    while [ ! -e "$FAKE_QSUB_GATE" ]; do sleep 0.02; done
fi
if grep -q '^#PBS -q nosuch' "$script"; then echo "qsub: Unknown queue" >&2; exit 170; fi
n=$(( $(cat "$FAKE_PBS_DIR/counter" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$FAKE_PBS_DIR/counter"
out=$(sed -n 's/^#PBS -o //p' "$script")
for fd in /proc/$$/fd/*; do  # the job keeps none of qsub's pipes (as a real PBS job)
    fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null
done
setsid bash "$script" > "$out" 2>&1 < /dev/null &
echo $! > "$FAKE_PBS_DIR/$n.pid"
echo "$n.fakepbs"
"""

QSTAT = r"""#!/usr/bin/env bash
alive() { local s; s=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null); [ -n "$s" ] && [ "$s" != Z ]; }
rc=0
echo "Job id            Name             User              Time Use S Queue"
echo "----------------  ---------------- ----------------  -------- - -----"
for id in "$@"; do
    n=${id%%.*}
    if [ ! -f "$FAKE_PBS_DIR/$n.pid" ]; then
        echo "qstat: Unknown Job Id $id" >&2; rc=153
    elif alive "$(cat "$FAKE_PBS_DIR/$n.pid")"; then
        echo "$n.fakepbs   taskmill-worker  root              00:00:01 R workq"
    else
        echo "qstat: $n.fakepbs Job has finished, use -x or -H to obtain historical job information" >&2
        rc=35
    fi
done
exit $rc
"""

QDEL = r"""#!/usr/bin/env bash
for id in "$@"; do
    n=${id%%.*}
    pid=$(cat "$FAKE_PBS_DIR/$n.pid" 2>/dev/null) || { echo "qdel: Unknown Job Id $id" >&2; exit 153; }
    kill -TERM -- "-$pid" 2>/dev/null || true
done
"""


@pytest.fixture
def fake_pbs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    bin_dir, state = tmp_path / "bin", tmp_path / "pbs-state"
    bin_dir.mkdir()
    state.mkdir()
    for name, text in (("qsub", QSUB), ("qstat", QSTAT), ("qdel", QDEL)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PBS_DIR", str(state))
    yield state
    for pidfile in state.glob("*.pid"):  # a failed test must not leave jobs running
        try:
            os.killpg(int(pidfile.read_text()), 9)
        except (ProcessLookupError, ValueError):
            pass


def job_processes(cluster: PBSCluster) -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"])
            if cluster.scheduler_file in " ".join(p.info["cmdline"] or ())]


def test_pbs_jobs_run_workers_and_are_deleted_on_close(fake_pbs: Path, tmp_path: Path) -> None:
    cluster = PBSCluster(cores=2, memory="2GB", processes=2, walltime="00:30:00",
                         job_name="tm-pbs", host="127.0.0.1", shared_directory=str(tmp_path / "s"))
    with cluster:
        cluster.scale(jobs=1)
        cluster.wait_for_workers(2, timeout=60)
        with Executor(cluster) as e:
            assert e.submit(sum, [1, 2, 3]).result() == 6
            workers = e.scheduler_info()["workers"].values()
            assert {w["name"] for w in workers} == {"tm-pbs-0-0", "tm-pbs-0-1"}
            assert {w["nthreads"] for w in workers} == {1}
        assert cluster.groups["tm-pbs-0"].job_id == "1.fakepbs"  # type: ignore[attr-defined]
    wait_for(lambda: not job_processes(cluster), timeout=30, message="job processes gone")
    assert not os.path.exists(cluster.directory)


def test_qsub_refusing_the_script_names_the_job_and_the_option(fake_pbs: Path,
                                                                tmp_path: Path) -> None:
    with PBSCluster(cores=1, memory="1GB", queue="nosuch", job_name="tm-pbs", host="127.0.0.1",
                    shared_directory=str(tmp_path / "s")) as cluster:
        with pytest.raises(RuntimeError) as info:
            cluster.scale(jobs=1)
        message = str(info.value)
        assert "`qsub` rejected the job script of tm-pbs-0" in message
        assert "Unknown queue" in message and "#PBS -q nosuch" in message
        assert cluster.groups == {}


def test_a_pbs_job_that_dies_early_is_reported_with_its_output(fake_pbs: Path,
                                                               tmp_path: Path) -> None:
    prologue = ["echo 'no python on this node' >&2", "exit 1"]
    with PBSCluster(cores=1, memory="1GB", job_name="tm-pbs", host="127.0.0.1",
                    shared_directory=str(tmp_path / "s"), job_script_prologue=prologue) as cluster:
        cluster.scale(jobs=1)
        with pytest.raises(RuntimeError) as info:
            cluster.wait_for_workers(1, timeout=30)
        assert re.search(r"job 1\.fakepbs left the queue before its workers registered",
                         str(info.value))
        assert "no python on this node" in str(info.value)


def test_close_during_a_submission_cancels_the_job_it_makes(fake_pbs: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    gate = tmp_path / "gate"
    monkeypatch.setenv("FAKE_QSUB_GATE", str(gate))

    async def main() -> None:
        cluster = PBSCluster(cores=1, memory="1GB", job_name="tm-pbs", host="127.0.0.1",
                             shared_directory=str(tmp_path / "s"), asynchronous=True)
        await cluster
        scaling = asyncio.ensure_future(cluster.scale(jobs=1))
        while not (tmp_path / "gate.waiting").exists():  # qsub is running
            await asyncio.sleep(0.02)
        closing = asyncio.ensure_future(cluster.close())
        while cluster.status != "closing":
            await asyncio.sleep(0.02)
        gate.touch()  # qsub now submits the job: close() must cancel it
        await closing
        await asyncio.gather(scaling, return_exceptions=True)
        assert (fake_pbs / "1.pid").exists()  # the job was made
        assert not job_processes(cluster)
        assert not os.path.exists(cluster.directory)

    asyncio.run(main())
