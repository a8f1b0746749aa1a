"""How executors get their engine: a factory callable injected through the task (pickled by
reference; None: the backend registry), cached once per worker; and what every row records about
the run that produced it."""

import pickle
from pathlib import Path

import pandas as pd
from PIL import Image

from tests.fakes import FakeEngine, make_chatty_engine, make_fake_engine, make_poison_engine
from udfs.engines import cache
from udfs.prompts import find_prompt
from udfs.runner.describe import DescribeTask
from udfs.runner.spark_udf import make_partition_fn
from udfs.settings import EngineSettings, ImageSettings

PROMPTS = Path(__file__).resolve().parents[2] / "conf" / "prompts"


def _task(**fields) -> DescribeTask:
    prompt = find_prompt(PROMPTS, "v2")
    return DescribeTask(engine=EngineSettings(model="fake-injected"), prompt=prompt,
                        sampling=prompt.sampling, **fields)


def test_an_injected_factory_builds_the_engine_once_and_rows_carry_the_fingerprint(tmp_path):
    cache.shutdown_all()
    paths = []
    for index in range(3):
        paths.append(tmp_path / f"{index}.png")
        Image.new("RGB", (56 + 28 * index, 56), (index, 90, 20)).save(paths[-1])
    frame = pd.DataFrame({"image_id": ["a", "b", "c"], "path": [str(p) for p in paths]})
    task = _task(make_engine=make_fake_engine, fingerprint="fp-123", batch_size=2)
    # What Spark does with the function: pickle it (the factory travels by reference).
    describe = pickle.loads(pickle.dumps(make_partition_fn(task)))
    frames = list(describe(iter([frame])))
    assert [len(f) for f in frames] == [2, 1]  # the adapter's frames: batch_size rows
    first = pd.concat(frames, ignore_index=True)
    second = pd.concat(describe(iter([frame])), ignore_index=True)  # the next task, same worker
    assert (first["status"] == "ok").all() and set(first["run_fingerprint"]) == {"fp-123"}
    assert cache.builds(task.engine, task.images, make_fake_engine) == 1
    assert first["description"].str.split(" by ").str[1].nunique() == 1
    assert list(first["description"]) == list(second["description"])
    cache.shutdown_all()


def test_each_factory_is_its_own_cache_entry_and_one_model_is_held_at_a_time():
    cache.shutdown_all()
    settings, images = EngineSettings(model="fake-factories"), ImageSettings()
    fake = cache.get_engine(settings, images, make_fake_engine)
    assert isinstance(fake, FakeEngine)
    assert cache.get_engine(settings, images, make_fake_engine) is fake
    assert cache.builds(settings, images, make_fake_engine) == 1
    chatty = cache.get_engine(settings, images, make_chatty_engine)
    assert chatty is not fake and fake.closed  # one model in memory at a time
    assert cache.builds(settings, images, make_chatty_engine) == 1
    cache.shutdown_all()


def test_an_injected_fake_never_evicts_the_registrys_engine(monkeypatch):
    """The registry's engine (a real model) and the injected factories' engine (fakes) have a
    slot of one each: a test fake between two real-engine runs leaves the real one warm."""
    cache.shutdown_all()
    monkeypatch.setattr(cache, "create_engine", make_fake_engine)  # stands in for the registry
    settings, images = EngineSettings(model="slots"), ImageSettings()
    real = cache.get_engine(settings, images)
    chatty = cache.get_engine(settings, images, make_chatty_engine)
    assert not real.closed and cache.get_engine(settings, images) is real
    poison = cache.get_engine(settings, images, make_poison_engine)
    assert chatty.closed and not poison.closed  # the injected slot holds one too
    other = cache.get_engine(EngineSettings(model="slots-2"), images)
    assert real.closed and not other.closed and not poison.closed  # one real model at a time
    assert cache.builds(settings, images) == 1
    cache.shutdown_all()


def test_the_factory_is_not_part_of_the_task_values():
    task = _task(make_engine=make_fake_engine)
    assert "make_engine" not in task.model_dump()
    assert _task().fingerprint == "" and _task().make_engine is None


def test_only_hub_revisions_reach_the_loaders():
    assert EngineSettings(model="m", revision="v1.2").hub_revision == "v1.2"
    assert EngineSettings(model="m", revision="local-0123abcd").hub_revision is None
    assert EngineSettings(model="m").hub_revision is None
