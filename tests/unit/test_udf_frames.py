"""``batch_size`` means one thing: the rows per frame the describe UDF receives (and hands back),
cut by the UDF's adapter whatever sizes Spark's Arrow batches have; engines fed batch-wise take
their images per ``generate`` call from their own backend settings instead."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fakes import FakeEngine, StreamingFakeEngine
from udfs.engines.stream import BatchedStream, open_stream
from udfs.runner.spark_udf import frames_of, in_frames_of
from udfs.settings import EngineSettings, ImageSettings


def _frames(sizes: list[int]) -> list[pd.DataFrame]:
    frames, start = [], 0
    for size in sizes:
        ids = [f"r{i}" for i in range(start, start + size)]
        # A shifted index, as slices of a larger Arrow batch have.
        frames.append(pd.DataFrame({"image_id": ids, "path": ids}, index=range(7, 7 + size)))
        start += size
    return frames


@given(st.lists(st.integers(0, 40), max_size=12), st.integers(1, 17))
def test_frames_have_exactly_rows_rows_and_keep_every_row_in_order(sizes, rows):
    out = list(frames_of(iter(_frames(sizes)), rows))
    total = sum(sizes)
    assert [len(f) for f in out] == [rows] * (total // rows) + ([total % rows] if total % rows
                                                                 else [])
    joined = pd.concat(out, ignore_index=True) if out else pd.DataFrame()
    assert list(joined.get("image_id", [])) == [f"r{i}" for i in range(total)]
    assert all(list(f.index) == list(range(len(f))) for f in out)
    assert all(list(f.columns) == ["image_id", "path"] for f in out)


def test_rows_per_frame_must_be_positive():
    with pytest.raises(ValueError, match="rows per frame must be at least 1, got 0"):
        list(frames_of(iter(_frames([3])), 0))


def _sizes_seen(batches):
    for frame in batches:
        yield pd.DataFrame({"rows": [len(frame)]})


def test_in_frames_of_hands_the_wrapped_function_frames_of_that_size():
    import pickle

    fn = pickle.loads(pickle.dumps(in_frames_of(4, _sizes_seen)))  # as Spark ships it
    seen = pd.concat(fn(iter(_frames([10, 1, 0, 6]))))
    assert list(seen["rows"]) == [4, 4, 4, 4, 1]


def test_a_batch_wise_engine_takes_its_backends_images_per_call():
    hf = FakeEngine(EngineSettings(backend="transformers", model="f",
                                   transformers={"images_per_call": 5}), ImageSettings())
    stream = open_stream(hf)
    assert isinstance(stream, BatchedStream) and (stream.capacity, stream.depth) == (5, 5)
    # Under the vLLM backend, an engine without a stream batches what vLLM would schedule.
    vllm_like = FakeEngine(EngineSettings(model="f", vllm={"max_num_seqs": 3}), ImageSettings())
    assert open_stream(vllm_like).capacity == 3


def test_an_engine_with_its_own_stream_keeps_it():
    engine = StreamingFakeEngine(EngineSettings(model="f", vllm={"max_num_seqs": 6}),
                                 ImageSettings())
    stream = open_stream(engine)
    assert not isinstance(stream, BatchedStream) and stream.capacity == 6
