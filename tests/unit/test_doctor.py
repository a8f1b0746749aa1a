"""The preflight's checks (jobs/cluster/doctor.py), each a pure function of node facts written
here and a config: what passes, what blocks, and what does not apply."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.cluster.doctor import (
    BLOCKER,
    NOT_APPLICABLE,
    OK,
    check_caches,
    check_compiler,
    check_cuda,
    check_gpu_memory,
    check_mlflow,
    check_model,
    check_versions,
    driver_is_new_enough,
)
from jobs.config import DescribeConfig
from udfs.engines.node_facts import Gpu, NodeFacts, parse_nvidia_smi
from udfs.settings import EngineSettings

VERSIONS = {"python": "3.11.9", "candid-vlm": "0.1.0", "vllm": "0.32.0", "torch": "2.13.0",
            "transformers": "5.19.0"}
A100 = Gpu(index="3", name="NVIDIA A100-SXM4-80GB", memory_mib=81920, driver="580.82.07")
MODEL = "/Volumes/main/models/Qwen2-VL-7B-Instruct"


def _node(role="executor task 0", **fields) -> NodeFacts:
    base = dict(role=role, host="node-1", versions=dict(VERSIONS), gpus=[A100], nvidia_smi=True,
                torch_cuda="13.0", compiler="/usr/bin/gcc",
                python_header="/usr/include/python3.11/Python.h", model_readable=True,
                model_revision="local-0123456789abcdef", weight_bytes=16_600_000_000,
                kv_bytes_per_token=57344, cache_root="/local_disk0/candid-cache")
    return NodeFacts(**{**base, **fields})


def _levels(findings) -> list[str]:
    return [f.level for f in findings]


def test_nvidia_smi_lines_become_gpus():
    text = "0, NVIDIA H100 80GB HBM3, 81559, 570.124.06\n1, NVIDIA H100 80GB HBM3, 81559, 570.124.06\n"
    assert parse_nvidia_smi(text) == [
        Gpu("0", "NVIDIA H100 80GB HBM3", 81559, "570.124.06"),
        Gpu("1", "NVIDIA H100 80GB HBM3", 81559, "570.124.06"),
    ]


def test_versions_must_match_everywhere():
    driver = _node("driver", gpus=[])
    same = check_versions(driver, [_node(), _node("executor task 1")])
    assert _levels(same) == [OK] and "on the driver and 2 executor task(s)" in same[0].text
    other = _node("executor task 1", host="node-7", versions={**VERSIONS, "torch": "2.14.0"})
    (finding,) = check_versions(driver, [_node(), other])
    assert finding.level == BLOCKER
    assert finding.text == "torch 2.13.0 on the driver, 2.14.0 on executor task 1 (node-7)"


@pytest.mark.parametrize("driver, cuda, new_enough", [
    ("580.65.06", "13.0", True), ("575.57.08", "13.0", False), ("570.124.06", "12.8", True),
    ("560.35.03", "12.8", False), ("535.183.01", "12.1", True), ("580.82.07", "11.2", False),
])
def test_the_driver_must_be_new_enough_for_torchs_cuda(driver, cuda, new_enough):
    assert driver_is_new_enough(driver, cuda) is new_enough


def test_cuda_checks_do_not_apply_without_gpus_and_block_an_old_driver():
    (skipped,) = check_cuda([_node(gpus=[], nvidia_smi=False)])
    assert skipped.level == NOT_APPLICABLE and "do not apply" in skipped.text
    old = Gpu("0", "NVIDIA A100-SXM4-80GB", 81920, "550.54.15")
    findings = check_cuda([_node(), _node("executor task 1", gpus=[old]),
                           _node("executor task 2", torch_cuda=None)])
    assert _levels(findings) == [OK, BLOCKER, BLOCKER]
    assert "driver 550.54.15 is older than 580.65.06, which torch's CUDA 13.0 needs" in findings[1].text
    assert "torch is a CPU build" in findings[2].text


def test_gpu_memory_holds_weights_kv_cache_and_runtime():
    engine = EngineSettings(model=MODEL, vllm={"gpu_memory_utilization": 0.9,
                                                "max_model_len": 2048})
    (fits,) = check_gpu_memory([_node()], engine)
    assert fits.level == OK
    # 15.5 GiB weights + 2048 x 56 KiB = 0.1 GiB KV + 2 GiB runtime of 0.9 x 80 GiB = 72 GiB.
    assert fits.text.startswith("executor task 0: 17.6 GiB needed (weights 15.5 GiB, KV cache 0.1 GiB")
    small = Gpu("0", "NVIDIA A10G", 23028, "580.82.07")
    big_kv = EngineSettings(model=MODEL, vllm={"kv_cache_memory_bytes": 8 << 30})
    (short,) = check_gpu_memory([_node(gpus=[small])], big_kv)
    assert short.level == BLOCKER and "25.5 GiB needed" in short.text
    (unknown,) = check_gpu_memory([_node(weight_bytes=None)], engine)
    assert unknown.level == NOT_APPLICABLE


def test_gpu_executors_need_gcc_and_python_headers():
    findings = check_compiler([_node(), _node("executor task 1", compiler=None, python_header=None),
                               _node("executor task 2", gpus=[])])
    assert _levels(findings) == [OK, BLOCKER]  # the GPU-less task is not checked
    assert "missing gcc and Python.h" in findings[1].text


def test_a_model_folder_must_be_readable_everywhere_with_the_drivers_revision():
    engine = EngineSettings(model=MODEL)
    driver = _node("driver")
    assert _levels(check_model(engine, driver, [_node()])) == [OK]
    unreadable = _node("executor task 1", host="node-4", model_readable=False, model_revision=None)
    swapped = _node("executor task 2", model_revision="local-ffffffffffffffff")
    findings = check_model(engine, driver, [_node(), unreadable, swapped])
    assert _levels(findings) == [BLOCKER, BLOCKER]
    assert findings[0].text.startswith("executor task 1 (node-4) cannot read /Volumes/")
    assert "has revision local-ffffffffffffffff, the driver local-0123456789abcdef" in findings[1].text
    assert _levels(check_model(engine, _node("driver", model_readable=False), [])) == [BLOCKER]


def test_a_hub_model_needs_a_pinned_commit():
    hub = "Qwen/Qwen2-VL-7B-Instruct"
    driver = _node("driver", model_readable=None)
    (unpinned,) = check_model(EngineSettings(model=hub), driver, [])
    assert unpinned.level == BLOCKER and "has no engine.revision" in unpinned.text
    (branch,) = check_model(EngineSettings(model=hub, revision="main"), driver, [])
    assert branch.level == BLOCKER and "pin a commit" in branch.text
    commit = "a" * 40
    assert _levels(check_model(EngineSettings(model=hub, revision=commit), driver, [])) == [OK]


def test_every_node_needs_a_writable_cache_folder():
    assert _levels(check_caches([_node("driver"), _node()])) == [OK]
    (blocked,) = check_caches([_node("driver"), _node(host="node-9", cache_root=None)])
    assert blocked.level == BLOCKER and "executor task 0 (node-9)" in blocked.text


def _config(tmp_path: Path, **mlflow) -> DescribeConfig:
    return DescribeConfig.model_validate({
        "input_table": str(tmp_path / "in"), "results_table": str(tmp_path / "out"),
        "engine": {"model": MODEL}, "mlflow": mlflow,
    })


def test_mlflow_reachable_or_off(tmp_path):
    assert _levels(check_mlflow(_config(tmp_path, enabled=False))) == [NOT_APPLICABLE]
    local = check_mlflow(_config(tmp_path, tracking_uri=f"sqlite:///{tmp_path}/m/mlflow.db"))
    assert _levels(local) == [OK]
    down = check_mlflow(_config(tmp_path, tracking_uri="http://mlflow.internal:5000",
                                on_error="fail"),
                        reach=lambda uri: "not reachable (Connection refused)")
    assert _levels(down) == [BLOCKER] and "Connection refused" in down[0].text
    tolerated = check_mlflow(_config(tmp_path, tracking_uri="http://mlflow.internal:5000",
                                     on_error="warn"),
                             reach=lambda uri: "not reachable (Connection refused)")
    assert _levels(tolerated) == ["warning"]
    up = check_mlflow(_config(tmp_path, tracking_uri="http://mlflow.internal:5000"),
                      reach=lambda uri: None)
    assert _levels(up) == [OK]


def test_the_task_refuses_a_model_folder_it_cannot_read_or_whose_revision_differs(tmp_path):
    from udfs.engines.failures import WorkerFatalError
    from udfs.engines.model_files import local_model_revision
    from udfs.engines.node_facts import verify_model_here

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"num_hidden_layers": 2}')
    (folder / "model.safetensors").write_bytes(b"\x01" * 4096)
    revision = local_model_revision(folder)
    verify_model_here(str(folder), revision)  # the driver's revision: passes
    with pytest.raises(WorkerFatalError, match="has revision local-[0-9a-f]{16}, the driver's has local-0000"):
        verify_model_here(str(folder), "local-0000000000000000")
    with pytest.raises(WorkerFatalError, match="is not readable on executor host"):
        verify_model_here(str(tmp_path / "elsewhere"), revision)
    verify_model_here("Qwen/Qwen2-VL-7B-Instruct", None)  # a hub id: nothing to read here
