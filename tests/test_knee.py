"""knee (notebook 01 §5): the sizes swept, the shape asserted, and when a measurement on a shared machine is no evidence."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from workbook_utils import knee, urls
from workbook_utils.db import make_engine
from workbook_utils.workload import postmaster_pid

KNEE = pd.Series({1: 100.0, 2: 200.0, 4: 205.0, 16: 210.0})  # 2 cores: rises to 2, flat past it
NO_KNEE = pd.Series({1: 100.0, 2: 110.0, 4: 120.0, 16: 200.0})


def sweep_of(throughput: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"queries/s": throughput}).rename_axis("pool_size")


@pytest.fixture(scope="module")
def server_pid():
    engine = make_engine(urls.database_url("tiny"))
    try:
        pid = postmaster_pid(engine)
    finally:
        engine.dispose()
    assert pid is not None  # the embedded server runs on this machine
    return pid


def test_pool_sizes_fit_the_room_and_keep_the_points_the_shape_needs():
    assert knee.pool_sizes(2, 100) == [1, 2, 4, 16]
    assert knee.pool_sizes(4, 100) == [1, 2, 4, 8, 32]
    assert knee.pool_sizes(4, 10) == [1, 2, 4, 8]
    assert knee.pool_sizes(1, 100) == [1, 2, 8]
    assert knee.pool_sizes(8, 0) == [1]


def test_shape_holds_only_for_a_rise_to_the_cores_then_flat():
    assert knee.shape_holds(KNEE, 2)
    assert not knee.shape_holds(NO_KNEE, 2)
    assert not knee.shape_holds(pd.Series({1: 100.0, 2: 200.0, 4: 205.0, 16: 300.0}), 2)  # not flat past the cores
    assert knee.shape_holds(pd.Series({1: 100.0, 2: 180.0}), 2)  # no size past the cores measured: nothing to be flat


def test_no_evidence_without_the_servers_cores(server_pid):
    said = []
    assert knee.settled_throughput(sweep_of(KNEE), 2, lambda sizes: pytest.fail("measured"), None, say=said.append) is None
    assert "DATABASE_URL" in said[0]
    assert knee.settled_throughput(sweep_of(KNEE), 1, lambda sizes: pytest.fail("measured"), server_pid,
                                   say=said.append) is None
    assert knee.settled_throughput(sweep_of(KNEE.drop(4)), 4, lambda sizes: pytest.fail("measured"), server_pid,
                                   say=said.append) is None
    assert "no room for a pool of 4" in said[-1]


def test_a_shape_that_holds_is_not_measured_again(server_pid):
    throughput = knee.settled_throughput(sweep_of(KNEE), 2, lambda sizes: pytest.fail("measured"), server_pid)
    assert throughput.equals(KNEE)


def test_without_the_shape_the_three_sizes_asserted_on_are_measured_again(server_pid):
    asked, said = [], []

    def again(sizes):
        asked.append(sizes)
        return sweep_of(KNEE[sizes])

    throughput = knee.settled_throughput(sweep_of(NO_KNEE), 2, again, server_pid, say=said.append)
    assert asked == [[1, 2, 16]] and throughput.to_dict() == {1: 100.0, 2: 200.0, 16: 210.0}
    assert said == ["The throughput did not have its shape (other programs may have taken cores from the server): "
                    "measured again."]


def test_a_machine_kept_busy_is_no_evidence_and_a_quiet_one_gets_its_failing_throughput_back(server_pid):
    def busy_again(sizes):  # another program keeps a core busy while the sizes are measured again
        subprocess.run([sys.executable, "-c", "import time\nend = time.time() + 0.6\nwhile time.time() < end: pass"],
                       check=True)
        return sweep_of(NO_KNEE[sizes])

    said = []
    assert knee.settled_throughput(sweep_of(NO_KNEE), 2, busy_again, server_pid, say=said.append) is None
    assert said[-1].startswith("The machine stayed busy: other programs used")
    # however busy the machine, a shape that never came is asserted (and fails) when busyness is not an excuse
    failing = knee.settled_throughput(sweep_of(NO_KNEE), 2, busy_again, server_pid, busy=float("inf"), say=said.append)
    assert failing.to_dict() == {1: 100.0, 2: 110.0, 16: 200.0} and not knee.shape_holds(failing, 2)
