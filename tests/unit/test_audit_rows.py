"""The audit's second pass on pandas frames with a fake engine, through the one executor runner:
probes per row, one request per probe streamed to the engine (a batch-wise engine gets one
generate call per distinct question among the requests in flight), each image read once,
answers back to their rows, error rows, engine death, the probe prompt file, and JSON rows read
by the described prompt's claims declaration (the rates: test_selfcheck.py)."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from tests.fakes import StreamingFakeEngine
from udfs.engines.base import Engine, EngineDeadError, Generation
from udfs.outputs.guardrails import check_prompt
from udfs.prompts import PromptSpec, load_prompt_file
from udfs.runner import audit as audit_rows
from udfs.runner.audit import (
    AuditTask,
    check_probe_template,
    probe_prompt,
)
from udfs.runner.task import run_frame
from udfs.settings import EngineSettings, ImageSettings

PROBE_FILE = Path(__file__).resolve().parents[2] / "conf" / "prompts" / "probes" / "probe_v1.yaml"
RED, BLUE = (200, 30, 30), (30, 70, 200)
TEMPLATE = PromptSpec(name="probe", version="v1", system="s", instructions="Q: {question}")


class QuestionEngine(Engine):
    """Answers by (question, image colour) from ``script``; records every generate call."""

    def __init__(self, script: dict, fail: set = frozenset(), dies: int = 0):
        super().__init__(EngineSettings(model="fake"), ImageSettings())
        self.script, self.fail, self.dies = script, fail, dies
        self.calls: list[tuple[str, int]] = []

    def generate(self, images, prompt, sampling):
        question = prompt.instructions.removeprefix("Q: ")
        if self.dies:
            self.dies -= 1
            raise EngineDeadError("fake death")
        self.calls.append((question, len(images)))
        colours = [image.getpixel((0, 0)) for image in images]
        if any((question, c) in self.fail for c in colours):
            raise ValueError("rejected")
        return [Generation(self.script.get((question, c), "no"), (1, 2), "stop", 5,
                           logprobs=(-0.5, -1.5)) for c in colours]

    def shutdown(self):
        pass


def _image(tmp_path: Path, name: str, colour) -> str:
    path = tmp_path / f"{name}.png"
    Image.new("RGB", (60, 40), colour).save(path)
    return str(path)


def _frame(tmp_path, rows) -> pd.DataFrame:
    return pd.DataFrame([
        {"image_id": i, "path": path, "description": text, "structured_json": None,
         "json_mode": False, "controls": controls}
        for i, path, text, controls in rows
    ])


def _task(**extra) -> AuditTask:
    return AuditTask(engine=EngineSettings(model="fake"), probe_prompt=TEMPLATE, **extra)


def _q(text: str) -> str:
    return f"{text} Answer yes or no."


def test_requests_are_grouped_by_question_and_answers_go_back_to_their_rows(tmp_path):
    red, blue = _image(tmp_path, "red", RED), _image(tmp_path, "blue", BLUE)
    frame = _frame(tmp_path, [
        ("r", red, "A red mug.", ["car", "drawer"]),  # controls: objects only -> car
        ("b", blue, "A blue mug with a handle.", ["lamp"]),
    ])
    engine = QuestionEngine({
        (_q("Is there a mug in this image?"), RED): "Yes.",
        (_q("Is the mug red?"), RED): "No, it is orange.",
        (_q("Is there a mug in this image?"), BLUE): "yes",
        (_q("Is there a handle in this image?"), BLUE): "I cannot tell.",
        (_q("Is the mug blue?"), BLUE): "yes",
        (_q("Is there a lamp in this image?"), BLUE): "yes",
    })
    out = run_frame(frame, _task(), lambda: engine)
    assert sorted(engine.calls) == sorted([
        (_q("Is there a mug in this image?"), 2),  # both images in one call
        (_q("Is the mug red?"), 1), (_q("Is there a car in this image?"), 1),
        (_q("Is there a handle in this image?"), 1), (_q("Is the mug blue?"), 1),
        (_q("Is there a lamp in this image?"), 1),
    ])
    r, b = out.to_dict("records")
    assert (r["status"], r["n_claims"], r["unconfirmed"], r["denied"]) == (
        "ok", 2, ["color:red"], ["color:red"])
    assert (r["n_controls"], r["control_yes"]) == (1, [])
    assert (b["n_claims"], b["unconfirmed"], b["denied"], b["control_yes"]) == (
        3, ["handle"], [], ["control:lamp"])
    detail = json.loads(r["probes_json"])
    assert detail[1] == {"kind": "color", "claim": "color:red",
                         "question": _q("Is the mug red?"), "expected": "yes",
                         "answer": "No, it is orange.", "parsed": "no", "mean_logprob": -1.0}


def test_default_controls_are_vocabulary_objects_when_there_is_no_truth(tmp_path):
    frame = _frame(tmp_path, [("r", _image(tmp_path, "red", RED), "A red mug.", None)])
    out = run_frame(frame, _task(n_controls=3), lambda: QuestionEngine({}))
    (row,) = out.to_dict("records")
    assert row["n_controls"] == 3 and row["n_claims"] == 2


def test_bad_image_and_rejected_request_fail_only_their_rows(tmp_path):
    missing = str(tmp_path / "missing.jpg")
    red, blue = _image(tmp_path, "red", RED), _image(tmp_path, "blue", BLUE)
    frame = _frame(tmp_path, [("gone", missing, "A mug.", []), ("r", red, "A mug.", []),
                              ("b", blue, "A mug.", [])])
    engine = QuestionEngine({}, fail={(_q("Is there a mug in this image?"), BLUE)})
    out = run_frame(frame, _task(), lambda: engine)
    assert list(out["status"]) == ["missing_file", "ok", "engine_error"]
    assert "rejected" in out["status_message"][2] and blue in out["status_message"][2]
    assert out["n_claims"][1] == 1 and pd.isna(out["n_claims"][0])


def test_a_dead_engine_is_rebuilt_once_and_a_second_death_fails_the_task(tmp_path):
    frame = _frame(tmp_path, [("r", _image(tmp_path, "red", RED), "A mug.", [])])
    engines = [QuestionEngine({}, dies=1), QuestionEngine({})]
    resets = []
    out = run_frame(frame, _task(), lambda: engines[len(resets)], lambda: resets.append(1))
    assert list(out["status"]) == ["ok"] and len(resets) == 1
    always = QuestionEngine({}, dies=2)
    with pytest.raises(RuntimeError, match="fatally twice"):
        run_frame(frame, _task(), lambda: always)


def test_a_row_without_probes_asks_nothing(tmp_path):
    frame = _frame(tmp_path, [("r", _image(tmp_path, "red", RED), "Something.", [])])
    engine = QuestionEngine({})
    out = run_frame(frame, _task(n_controls=0), lambda: engine)
    assert engine.calls == [] and out["n_claims"][0] == 0 and out["status"][0] == "ok"


def test_missing_input_columns_are_named():
    with pytest.raises(ValueError, match="controls"):
        run_frame(pd.DataFrame({"image_id": [], "path": [], "description": [],
                                  "structured_json": [], "json_mode": []}), _task(), None)


def test_probe_prompt_puts_the_question_in_the_instructions():
    spec = probe_prompt(TEMPLATE, "Is there a mug?")
    assert spec.instructions == "Q: Is there a mug?" and spec.key == "probe/v1"
    with pytest.raises(ValueError, match="exactly once, found 0"):
        check_probe_template(PromptSpec(name="probe", version="v1", system="s", instructions="x"))


def test_the_shipped_probe_prompt_is_sound():
    spec = load_prompt_file(PROBE_FILE)
    check_probe_template(spec)
    assert (spec.key, spec.sampling.temperature, spec.sampling.max_tokens) == ("probe/v1", 0.0, 4)
    assert check_prompt(spec) == []


def test_docstring_examples_run():
    assert doctest.testmod(audit_rows).failed == 0


class AnsweringStreamEngine(StreamingFakeEngine):
    """A streaming engine (like vLLM) that answers each probe from ``script`` by (question,
    image colour): every request brings its own prompt."""

    script: dict = {}

    def streamed(self, request, scheduled_at):
        question = request.call.prompt.instructions.removeprefix("Q: ")
        colour = request.image.getpixel((0, 0))
        self.asked.append(question)
        return Generation(self.script.get((question, colour), "no"), (1,), "stop", 5,
                          scheduled_at=scheduled_at)


def test_probes_stream_through_the_shared_runner_and_each_image_is_read_once(
    tmp_path, monkeypatch
):
    from udfs.runner import task as runner_task

    reads: list[str] = []
    real_load = runner_task.load_image

    def counting_load(path, settings):
        reads.append(path)
        return real_load(path, settings)

    monkeypatch.setattr(runner_task, "load_image", counting_load)
    red, blue = _image(tmp_path, "red", RED), _image(tmp_path, "blue", BLUE)
    frame = _frame(tmp_path, [
        ("r", red, "A red mug with a handle.", ["car", "lamp"]),
        ("none", blue, "Something.", []),  # no claim, no control: nothing asked, nothing read
        ("b", blue, "A blue mug.", ["drawer", "lamp"]),
    ])
    engine = AnsweringStreamEngine(EngineSettings(model="fake", vllm={"max_num_seqs": 2}), ImageSettings())
    engine.asked = []
    engine.script = {(_q("Is there a mug in this image?"), RED): "Yes.",
                     (_q("Is the mug red?"), RED): "yes",
                     (_q("Is there a lamp in this image?"), BLUE): "yes"}
    out = run_frame(frame, _task(), lambda: engine)
    assert sorted(reads) == sorted([red, blue])  # once per row with probes, not once per probe
    r, none, b = out.to_dict("records")
    assert (r["status"], r["n_claims"], r["unconfirmed"], r["control_yes"]) == (
        "ok", 3, ["handle"], [])
    assert (none["status"], none["n_claims"], none["n_controls"]) == ("ok", 0, 0)
    assert (b["n_claims"], b["unconfirmed"], b["control_yes"]) == (
        2, ["mug", "color:blue"], ["control:lamp"])
    # Every probe was one request, and the engine was kept at its capacity (2) while probes
    # were left to submit.
    assert len(engine.asked) == r["n_claims"] + r["n_controls"] + b["n_claims"] + b["n_controls"]
    total = len(engine.asked)
    assert all(in_flight >= 2 for in_flight, submitted in engine.in_flight_at_step
               if submitted < total)


def test_json_rows_are_probed_by_the_declared_claim_fields(tmp_path):
    red = _image(tmp_path, "red", RED)
    output = json.dumps({"thing": "mug", "paint": ["red"], "mood": "calm"})
    frame = _frame(tmp_path, [("j", red, "ignored text about a lamp", [])]).assign(
        structured_json=[output], json_mode=[True])
    engine = QuestionEngine({(_q("Is there a mug in this image?"), RED): "yes",
                             (_q("Is the mug red?"), RED): "no"})
    declared = {"thing": "object", "paint": "color", "mood": "none"}
    out = run_frame(frame, _task(claim_fields=declared), lambda: engine)
    (row,) = out.to_dict("records")
    # The declared fields, not the text: a mug and its colour; "mood" claims nothing.
    assert sorted(question for question, _ in engine.calls) == sorted([
        _q("Is there a mug in this image?"), _q("Is the mug red?")])
    assert (row["status"], row["n_claims"], row["denied"]) == ("ok", 2, ["color:red"])
    with pytest.raises(ValueError, match="claims declaration"):
        run_frame(frame, _task(), lambda: QuestionEngine({}))
