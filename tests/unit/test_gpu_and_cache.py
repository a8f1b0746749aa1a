from types import SimpleNamespace

import pytest

from tests.fakes import make_fake_engine as FAKE
from udfs.engines import cache
from udfs.engines.gpu import cuda_visible_devices, pin_task_gpus
from udfs.settings import EngineSettings, ImageSettings


@pytest.mark.parametrize("resources, expected", [
    ({}, None),
    ({"gpu": SimpleNamespace(name="gpu", addresses=["3"])}, "3"),
    ({"gpu": SimpleNamespace(name="gpu", addresses=["0", "1"])}, "0,1"),
    ({"gpu": ["2"]}, "2"),
    ({"gpu": SimpleNamespace(name="gpu", addresses=[])}, None),
    ({"fpga": SimpleNamespace(name="fpga", addresses=["0"])}, None),
])
def test_cuda_visible_devices_from_task_resources(resources, expected):
    assert cuda_visible_devices(resources) == expected


def test_pinning_outside_a_task_changes_nothing(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    assert pin_task_gpus() is None
    import os
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "7"


def test_cache_builds_once_per_settings_and_replaces_on_change():
    cache.shutdown_all()
    first_settings = EngineSettings(model="fake-a")
    images = ImageSettings()
    first = cache.get_engine(first_settings, images, FAKE)
    assert cache.get_engine(first_settings, images, FAKE) is first
    assert cache.builds(first_settings, images, FAKE) == 1
    second = cache.get_engine(EngineSettings(model="fake-b"), images, FAKE)
    assert second is not first and first.closed  # one model in memory at a time
    cache.discard_engine(EngineSettings(model="fake-b"), images, FAKE)
    assert second.closed
    cache.shutdown_all()


def test_the_registry_names_its_backends_when_given_another():
    from udfs.engines.registry import create_engine

    class Unknown:  # settings whose backend no registry entry has (validation bypassed)
        backend = "tensorrt"

    with pytest.raises(ValueError, match=r"unknown engine backend 'tensorrt'; known: \['transformers', 'vllm'\]"):
        create_engine(Unknown(), ImageSettings())
