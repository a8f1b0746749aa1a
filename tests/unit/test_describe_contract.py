"""The row contract of udfs.runner.describe with fake engines: rows in == rows out, input order,
images per generate call (the backend's own setting), per-row errors, poison-row isolation,
fatal-error recovery."""

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from tests.fakes import (
    POISON_RGB,
    AlwaysDeadEngine,
    DiesOnceEngine,
    FakeEngine,
    PoisonEngine,
)
from udfs.prompts import find_prompt
from udfs.runner.describe import RESULT_COLUMN_NAMES, DescribeTask
from udfs.runner.task import run_batches, run_frame
from udfs.settings import EngineSettings, ImageSettings

PROMPTS = Path(__file__).resolve().parents[2] / "conf" / "prompts"


def _settings(model: str = "fake", images_per_call: int = 3) -> EngineSettings:
    """A batch-wise engine's settings: the fakes stand in for the transformers backend."""
    return EngineSettings(backend="transformers", model=model,
                          transformers={"images_per_call": images_per_call})


def _task(model: str = "fake", images_per_call: int = 3) -> DescribeTask:
    prompt = find_prompt(PROMPTS, "v2")
    return DescribeTask(
        engine=_settings(model, images_per_call), prompt=prompt, sampling=prompt.sampling,
        run_id="run-1",
    )


def _images(folder: Path, sizes, poison: set[int] = frozenset()) -> pd.DataFrame:
    rows = []
    for index, (w, h) in enumerate(sizes):
        path = folder / f"img_{index}.png"
        colour = POISON_RGB if index in poison else (10 * index % 255, 100, 50)
        image = Image.new("RGB", (w, h), colour)
        image.save(path)
        rows.append({"image_id": f"id-{index}", "path": str(path)})
    return pd.DataFrame(rows)


class Provider:
    """Builds engines on demand, like the per-worker cache, and remembers them."""

    def __init__(self, engine_class, settings=None):
        self.engine_class, self.settings, self.built = engine_class, settings, []

    def get(self):
        if not self.built or self.built[-1].closed:
            self.built.append(self.engine_class(self.settings or _settings(), ImageSettings()))
        return self.built[-1]

    def reset(self):
        if self.built:
            self.built[-1].shutdown()


def test_rows_in_equal_rows_out_in_order_with_bounded_batches(tmp_path):
    frame = _images(tmp_path, [(56 + 28 * i, 84) for i in range(7)])
    provider = Provider(FakeEngine)
    out = pd.concat(run_batches(iter([frame]), _task(), provider.get))
    assert list(out["image_id"]) == list(frame["image_id"])
    assert list(out.columns) == list(RESULT_COLUMN_NAMES)
    assert (out["status"] == "ok").all()
    # Output i describes input i: the fake writes the (resized) size it was given.
    for (_, row), (w, _) in zip(out.iterrows(), [(56 + 28 * i, 84) for i in range(7)], strict=True):
        assert row["description"].startswith(f"fake {row['input_width']}x{row['input_height']}")
        assert row["orig_width"] == w
    assert len(provider.built) == 1
    assert provider.built[0].batch_sizes == [3, 3, 1]
    assert set(out["prompt_version"]) == {"v2"} and set(out["run_id"]) == {"run-1"}
    assert out["prompt_hash"].nunique() == 1 and (out["completion_tokens"] == 3).all()


def test_bad_rows_become_error_rows_and_the_engine_is_not_built_for_them(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("<html>not an image</html>")
    frame = pd.DataFrame({
        "image_id": ["a", "b", "c"],
        "path": [str(tmp_path / "missing.jpg"), str(tmp_path / "empty.jpg"),
                 str(tmp_path / "text.jpg")],
    })
    provider = Provider(FakeEngine)
    out = run_frame(frame, _task(), provider.get)
    assert list(out["status"]) == ["missing_file", "empty_file", "not_an_image"]
    assert all(str(tmp_path) in message for message in out["status_message"])
    assert out["description"].isna().all()
    assert provider.built == []


def test_poison_rows_are_isolated_by_bisection(tmp_path):
    frame = _images(tmp_path, [(64, 64)] * 8, poison={2, 5})
    provider = Provider(PoisonEngine, _settings(images_per_call=8))
    out = run_frame(frame, _task(images_per_call=8), provider.get)
    assert list(out["status"] == "engine_error") == [i in {2, 5} for i in range(8)]
    assert out.loc[2, "status_message"].endswith("ValueError: poisoned image in batch")
    assert out.loc[out["status"] == "ok", "description"].notna().all()


def test_fatal_error_rebuilds_the_engine_once(tmp_path):
    marker = tmp_path / "died"
    frame = _images(tmp_path, [(64, 64)] * 4)
    provider = Provider(DiesOnceEngine, _settings(model=str(marker)))
    out = run_frame(frame, _task(model=str(marker)), provider.get, provider.reset)
    assert (out["status"] == "ok").all()
    assert len(provider.built) == 2 and provider.built[0].closed


def test_second_fatal_error_fails_the_task_with_a_clear_message(tmp_path):
    frame = _images(tmp_path, [(64, 64)] * 2)
    provider = Provider(AlwaysDeadEngine)
    with pytest.raises(RuntimeError, match="engine failed fatally twice"):
        run_frame(frame, _task(), provider.get, provider.reset)
    assert len(provider.built) == 2


def test_missing_input_column_is_a_clear_error():
    with pytest.raises(ValueError, match=r"lack column\(s\) \['path'\]"):
        list(run_batches(iter([pd.DataFrame({"image_id": ["x"]})]), _task(), lambda: None))


def test_attempts_column_passes_through(tmp_path):
    frame = _images(tmp_path, [(64, 64)] * 2).assign(attempts=[1, 3])
    out = run_frame(frame, _task(), Provider(FakeEngine).get)
    assert list(out["attempts"]) == [1, 3]


class JsonEngine(FakeEngine):
    """Answers v3's schema for wide images and breaks it for tall ones, as an unconstrained
    engine (transformers) can."""

    def _describe(self, image):
        from udfs.engines.base import Generation

        if image.width >= image.height:
            text = ('{"subject":"red square","colors":["red"],"count":"uncertain",'
                    '"visible_features":[],"not_visible":["texture"],"confidence":"low"}')
        else:
            text = '{"subject": "red square", "colors": ['
        return Generation(text=text, token_ids=(1,), finish_reason="stop", prompt_tokens=3)


def test_json_prompts_get_structured_values_or_an_invalid_json_flag(tmp_path):
    import json

    prompt = find_prompt(PROMPTS, "v3")
    task = DescribeTask(engine=_settings(), prompt=prompt, sampling=prompt.sampling)
    frame = _images(tmp_path, [(112, 56), (56, 112)])
    out = run_frame(frame, task, Provider(JsonEngine).get)
    wide, tall = out.iloc[0], out.iloc[1]
    assert json.loads(wide["structured_json"]) == {
        "subject": "red square", "colors": '["red"]', "count": "uncertain",
        "visible_features": [], "not_visible": ["texture"], "confidence": "low",
    }
    assert "invalid_json" not in wide["guardrail_flags"]
    assert tall["structured_json"] is None and "invalid_json" in tall["guardrail_flags"]
    assert (out["status"] == "ok").all()  # a bad output is a flag, not a failed row
