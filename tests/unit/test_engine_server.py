"""Engine servers without Spark (udfs.engines.server): the streamed feeding's contracts hold
through a server (rows in == rows out, per-row errors as data, poison rows isolated, the engine
kept full, a dead engine rebuilt once), the engine outlives the client that started it, a slot
never gets two servers, a server stops with its owner or when idle, and a task's requests never
run on a server for another GPU.

Each test starts real server processes (``python -m udfs.engines.server``) owned by this
test process, in a short private folder, and stops them at the end."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from tests.cluster_fakes import PINNING_LOG_ENV, read_pinning_log
from tests.fakes import POISON_RGB, REJECT_RGB
from udfs.engines.base import EngineDeadError
from udfs.engines.failures import WorkerFatalError
from udfs.engines.server import host
from udfs.engines.server.client import ServerLink, factory_name
from udfs.engines.server.protocol import (
    OpenSpec,
    ProcessId,
    ServerAddress,
    executor_process,
    portable_error,
)
from udfs.prompts import find_prompt
from udfs.runner.describe import DescribeTask
from udfs.runner.feed_stats import FeedStats
from udfs.runner.spark_udf import uses_engine_server
from udfs.runner.task import run_batches
from udfs.settings import EngineSettings, ImageSettings

PROMPTS = Path(__file__).resolve().parents[2] / "conf" / "prompts"
# A server that should stop has this long to do it (it looks once a second).
STOP_DEADLINE_S = 30.0
ME = ProcessId.of(os.getpid())


@pytest.fixture
def folder():
    """A short folder for sockets (a socket path must stay under 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="ces-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def links(folder):
    """Makes links to servers in ``folder``; stops every server they reached at the end."""
    made: list[ServerLink] = []

    def make(factory, gpus=("0",), owner=ME, task: DescribeTask | None = None, **engine
             ) -> ServerLink:
        settings = task.engine if task else EngineSettings.model_validate({"model": "fake",
                                                                          **engine})
        link = ServerLink(settings, ImageSettings(), factory, gpus, owner=owner,
                          task={"partition": len(made)}, folder=folder)
        made.append(link)
        return link

    yield make
    for link in made:
        link.stop_server()


def _task(**engine) -> DescribeTask:
    prompt = find_prompt(PROMPTS, "v2")
    settings = EngineSettings.model_validate({"model": "fake", **engine})
    return DescribeTask(engine=settings, prompt=prompt, sampling=prompt.sampling, run_id="run-s")


def _frame(folder: Path, count: int, colours: dict[int, tuple] | None = None) -> pd.DataFrame:
    rows = []
    for index in range(count):
        path = folder / f"img_{index}.png"
        colour = (colours or {}).get(index, (10 * index % 250, 100, 50))
        Image.new("RGB", (56 + 28 * (index % 7), 84), colour).save(path)
        rows.append({"image_id": f"id-{index}", "path": str(path)})
    return pd.DataFrame(rows)


def _through(link: ServerLink, frames, task, stats: list | None = None) -> pd.DataFrame:
    out = run_batches(iter(frames), task, get_engine=None, reset_engine=link.reset,
                      on_stats=(stats.append if stats is not None else None), connect=link.connect)
    return pd.concat(list(out), ignore_index=True)


def _gone(pid: int) -> bool:
    """Wait (bounded) until ``pid`` has exited; True if it did."""
    deadline = time.monotonic() + STOP_DEADLINE_S
    while time.monotonic() < deadline:
        if not ProcessId.of(pid).alive():
            return True
        time.sleep(0.1)
    return False


def test_rows_through_a_server_equal_the_in_process_rows(folder, links, tmp_path):
    from tests.cluster_fakes import make_where_engine

    frames = [_frame(tmp_path, 7)]
    task = _task(backend="transformers", transformers={"images_per_call": 3})
    served = _through(links(make_where_engine, task=task), frames, task)
    local = pd.concat(run_batches(iter(frames), task, lambda: make_where_engine(
        task.engine, task.images)), ignore_index=True)
    columns = ["image_id", "status", "description", "finish_reason", "prompt_tokens"]
    assert len(served) == 7
    assert served[columns].equals(local[columns])
    assert served["description"].iloc[1] == "fake 84x84"


def test_streamed_contracts_hold_through_a_server(links, tmp_path):
    from tests.fakes import make_streaming_fake_engine

    frame = _frame(tmp_path, 30, {5: POISON_RGB, 11: REJECT_RGB})
    stats: list[FeedStats] = []
    task = _task(vllm={"max_num_seqs": 4})
    out = _through(links(make_streaming_fake_engine, task=task),
                   [frame.iloc[:13], frame.iloc[13:]], task, stats)
    assert list(out["image_id"]) == list(frame["image_id"])  # one row per row, in order
    failed = set(out.index[out["status"] != "ok"])
    assert failed == {5, 11}  # the poisoned and the rejected row, and nobody else
    assert "poisoned" in out.loc[5, "status_message"]
    assert "rejected" in out.loc[11, "status_message"]
    (feed,) = stats
    # The server's engine ran full (4 at once) and the feeder kept more than that submitted.
    assert feed.engine_running_peak == 4 and feed.in_flight_peak >= 4
    assert feed.failed_requests == 2 and feed.engine_rebuilds == 0


def test_a_dead_engine_is_rebuilt_once_by_the_server(links, tmp_path):
    from tests.fakes import make_dies_once_engine

    marker = tmp_path / "died"
    task = _task(backend="transformers", model=str(marker))
    link = links(make_dies_once_engine, task=task)
    stats: list[FeedStats] = []
    out = _through(link, [_frame(tmp_path, 5)], task, stats)
    assert (out["status"] == "ok").all() and len(out) == 5
    assert marker.exists() and stats[0].engine_rebuilds == 1
    stream = link.connect()
    try:
        assert stream.builds == 2  # the first engine died and was discarded; one rebuild
    finally:
        stream.close()


def test_an_engine_that_stays_dead_fails_the_task(links, tmp_path):
    from tests.fakes import make_always_dead_engine

    task = _task(backend="transformers")
    with pytest.raises(RuntimeError, match="failed fatally twice in a row"):
        _through(links(make_always_dead_engine, task=task), [_frame(tmp_path, 3)], task)


def test_an_engine_that_cannot_load_fails_the_task_with_its_error(links, tmp_path):
    from tests.cluster_fakes import make_unloadable_engine

    # One line naming what failed to import and the versions installed (issue 17, item 4).
    with pytest.raises(WorkerFatalError,
                       match=r"engine cannot be imported.*install the gpu extra.*installed: "):
        _through(links(make_unloadable_engine), [_frame(tmp_path, 2)], _task())


def test_a_broken_cuda_context_fails_the_task_and_stops_the_server(links, tmp_path):
    from tests.cluster_fakes import make_broken_cuda_engine, make_where_engine

    task = _task(backend="transformers")
    link = links(make_broken_cuda_engine, task=task)
    server = link.connect()
    server_pid = server.server_pid
    server.close()
    with pytest.raises(WorkerFatalError, match="illegal memory access.*Spark retries it"):
        _through(link, [_frame(tmp_path, 3)], task)
    # No engine can be built in that process again: the server is gone, and the task Spark
    # retries on this GPU starts a fresh one.
    assert _gone(server_pid)
    retry = links(make_where_engine)
    stream = retry.connect()
    try:
        assert stream.server_pid != server_pid
    finally:
        stream.close()


def test_the_engine_outlives_the_client_and_is_built_once(links, folder, tmp_path, monkeypatch):
    from tests.cluster_fakes import make_where_engine

    log = tmp_path / "where.jsonl"
    monkeypatch.setenv(PINNING_LOG_ENV, str(log))
    task = _task(backend="transformers")
    for _ in range(3):  # three tasks, each with a link of its own, as from three workers
        out = _through(links(make_where_engine, task=task), [_frame(tmp_path, 4)], task)
        assert (out["status"] == "ok").all()
    records = read_pinning_log(str(log))
    builds = [r for r in records if r["event"] == "build"]
    assert len(builds) == 1 and builds[0]["pid"] != os.getpid()
    # Every call ran in the server, on the GPU the tasks were given.
    assert {r["pid"] for r in records} == {builds[0]["pid"]}
    assert all(r["cuda_visible_devices"] == "0" and r["task_gpus"] == ["0"] for r in records)


def test_concurrent_starters_start_one_server(links, folder):
    from tests.cluster_fakes import make_where_engine

    started = [links(make_where_engine) for _ in range(4)]
    pids: list[int] = []
    errors: list[BaseException] = []

    def open_one(link: ServerLink) -> None:
        try:
            stream = link.connect()
            pids.append(stream.server_pid)
            stream.close()
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=open_one, args=(link,)) for link in started]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(pids) == 4 and len(set(pids)) == 1


def test_a_second_server_for_a_slot_refuses_to_start(links, folder):
    from tests.cluster_fakes import make_where_engine

    link = links(make_where_engine)
    link.connect().close()
    address = link.address
    second = subprocess.run(
        [sys.executable, "-m", "udfs.engines.server", "--socket", str(folder / "other.sock"),
         "--lock", str(address.lock), "--owner-pid", str(os.getpid()), "--gpus", "0"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
    )
    assert second.returncode == host.SLOT_TAKEN, second.stderr
    assert "another engine server holds" in second.stderr


def test_a_server_stops_when_its_owner_exits(links):
    from tests.cluster_fakes import make_where_engine

    owner = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        link = links(make_where_engine, owner=ProcessId.of(owner.pid))
        stream = link.connect()
        server = stream.server_pid
        stream.close()
        assert ProcessId.of(server).alive()
    finally:
        owner.stdin.close()
        owner.wait(timeout=30)
    assert _gone(server)
    address = link.address
    # Nothing of the slot is left but its log.
    assert not address.socket.exists() and not address.lock.exists()
    assert not address.starting.exists() and address.log.exists()


def test_an_idle_server_stops_after_its_timeout(links):
    from tests.cluster_fakes import make_where_engine

    stream = links(make_where_engine, server_idle_timeout_s=0.5).connect()
    server = stream.server_pid
    stream.close()
    assert _gone(server)


def test_a_task_is_never_served_by_another_gpus_server(links, folder):
    from tests.cluster_fakes import make_where_engine

    link = links(make_where_engine, gpus=("0",))
    link.connect().close()
    # A client that claims GPU 1 at GPU 0's address (a bug in the slot naming would do this).
    wrong = ServerLink(link_settings(), ImageSettings(), make_where_engine, ("1",), owner=ME,
                       folder=folder)
    wrong.address = link.address
    with pytest.raises(RuntimeError, match=r"given GPU\(s\) \('1',\) but this engine server "
                                           r"serves \('0',\)"):
        wrong.connect()


def link_settings() -> EngineSettings:
    return EngineSettings(model="fake")


def test_slots_are_named_by_owner_and_gpu(folder):
    owner = ProcessId(1234, "5678")
    assert ServerAddress.for_slot(owner, ("3",), folder).name == "e1234-5678-gpu3"
    assert ServerAddress.for_slot(owner, None, folder).name == "e1234-5678-cpu"
    assert ServerAddress.for_slot(ProcessId(1235, "5678"), ("3",), folder).name != \
        "e1234-5678-gpu3"
    assert len(str(ServerAddress.for_slot(owner, ("0", "1"), None).socket)) < 108


def test_without_a_java_ancestor_the_parent_owns_the_server():
    assert executor_process() == ProcessId.of(os.getppid())
    assert ME.alive() and not ProcessId(os.getpid(), "not-my-start-time").alive()


@pytest.mark.parametrize(("placement", "gpus", "expected"), [
    ("auto", ("0",), True), ("auto", None, False), ("server", None, True),
    ("worker", ("0",), False),
])
def test_placement_decides_where_the_engine_runs(placement, gpus, expected):
    assert uses_engine_server(placement, gpus) is expected


def test_only_module_level_factories_reach_a_server():
    from tests.fakes import make_fake_engine

    assert factory_name(make_fake_engine) == "tests.fakes:make_fake_engine"
    assert host.load_factory("tests.fakes:make_fake_engine") is make_fake_engine
    with pytest.raises(ValueError, match="module-level function"):
        factory_name(lambda settings, images: None)


class _Unpicklable(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a}/{b}")


def test_errors_cross_as_themselves_or_as_a_description():
    assert isinstance(portable_error(ValueError("bad row")), ValueError)
    crossed = portable_error(_Unpicklable(1, 2))
    assert type(crossed) is RuntimeError and str(crossed) == "_Unpicklable: 1/2"
    assert isinstance(pickle.loads(pickle.dumps(EngineDeadError("x"))), EngineDeadError)
    spec = OpenSpec(None, {}, {}, ("0",))
    assert pickle.loads(pickle.dumps(spec)) == spec
