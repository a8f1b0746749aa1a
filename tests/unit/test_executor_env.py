"""The executor's process environment (udfs/engines/vllm_env.py): caches in a writable local
folder, GPUs numbered like nvidia-smi, the Hub offline for a local model folder."""

from __future__ import annotations

import os

from udfs.engines.vllm_env import (
    cache_root_candidates,
    executor_env,
    prepare_executor_env,
    writable_cache_root,
)


def test_cache_folders_prefer_candids_setting_then_spark_local_dirs_then_tmp():
    environ = {"SPARK_LOCAL_DIRS": "/disk1/spark,/disk2/spark", "LOCAL_DIRS": "/yarn/app_1",
               "CANDID_EXECUTOR_CACHE": "/nvme/candid"}
    assert cache_root_candidates(environ, "/tmp") == [
        "/nvme/candid/candid-cache", "/disk1/spark/candid-cache", "/disk2/spark/candid-cache",
        "/yarn/app_1/candid-cache", "/tmp/candid-cache",
    ]
    assert cache_root_candidates({}, "/var/tmp") == ["/var/tmp/candid-cache"]


def test_the_first_writable_folder_is_picked(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    picked = writable_cache_root([str(blocked / "candid-cache"), str(tmp_path / "ok" / "candid-cache")])
    assert picked == str(tmp_path / "ok" / "candid-cache")
    assert os.path.isdir(picked) and os.listdir(picked) == []  # the probe file is gone
    assert writable_cache_root([str(blocked / "x")]) is None


def test_a_local_model_folder_runs_with_the_hub_offline_and_a_hub_id_does_not():
    local = executor_env("/Volumes/main/models/Qwen2-VL-7B-Instruct", "/disk1/candid-cache")
    assert local == {
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_NO_USAGE_STATS": "1",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "VLLM_CACHE_ROOT": "/disk1/candid-cache/vllm",
        "TRITON_CACHE_DIR": "/disk1/candid-cache/triton",
        "TORCHINDUCTOR_CACHE_DIR": "/disk1/candid-cache/inductor",
        "HF_HOME": "/disk1/candid-cache/huggingface",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
    }
    hub = executor_env("Qwen/Qwen2-VL-7B-Instruct", "/disk1/candid-cache")
    assert "HF_HUB_OFFLINE" not in hub and "TRANSFORMERS_OFFLINE" not in hub
    assert hub["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID" and hub["HF_HOME"] == "/disk1/candid-cache/huggingface"


def test_the_cluster_settings_win_except_the_gpu_order(tmp_path, monkeypatch):
    for key in ("VLLM_CACHE_ROOT", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "HF_HOME",
                "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "CANDID_EXECUTOR_CACHE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SPARK_LOCAL_DIRS", str(tmp_path / "local"))
    monkeypatch.setenv("TRITON_CACHE_DIR", "/cluster/triton")  # spark.executorEnv from the admin
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
    applied = prepare_executor_env("/models/qwen")
    cache = tmp_path / "local" / "candid-cache"
    assert os.environ["TRITON_CACHE_DIR"] == "/cluster/triton" and "TRITON_CACHE_DIR" not in applied
    assert os.environ["VLLM_CACHE_ROOT"] == str(cache / "vllm")
    assert os.environ["HF_HOME"] == str(cache / "huggingface")
    assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert os.environ["HF_HUB_OFFLINE"] == "1" and cache.is_dir()
