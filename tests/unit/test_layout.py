"""Chunks are made of whole buckets (or equal slices of one): every bucket belongs to exactly
the chunks ``buckets_of`` names, whatever the row count and chunk size."""

from collections import Counter

import pytest

from jobs.tables.layout import BUCKET, ChunkPlan, ResultsLayout


@pytest.mark.parametrize(
    ("rows", "chunk_size", "buckets", "chunks"),
    [
        (8, 5, 1024, 2),
        (1_000_000, 100_000, 1024, 10),
        (1_000_001, 100_000, 1024, 11),
        (12_800_000, 100_000, 1024, 128),
        (12_800_000, 10_000, 1024, 2048),  # 1280 wanted: a multiple of the bucket count
        (5, 100, 16, 1),
        (0, 100, 16, 1),
    ],
)
def test_chunk_counts_and_their_buckets_cover_every_bucket(rows, chunk_size, buckets, chunks):
    plan = ChunkPlan.for_rows(rows, chunk_size, buckets)
    assert plan.count == chunks
    owners = Counter(b for c in range(plan.count) for b in plan.buckets_of(c))
    assert set(owners) == set(range(buckets))
    # Each bucket is in one chunk, or sliced equally over count / buckets chunks.
    assert set(owners.values()) == {max(1, plan.count // buckets)}


def test_chunk_sizes_stay_within_one_bucket_of_each_other():
    plan = ChunkPlan.for_rows(1_000_000, 100_000, 1024)
    sizes = {len(plan.buckets_of(c)) for c in range(plan.count)}
    assert sizes == {102, 103}


def test_merge_condition_names_the_buckets_only_for_a_bucketed_table():
    keys = ("image_id", "model")
    assert ResultsLayout(None).merge_condition(keys, [1, 2]) == (
        "t.`image_id` = s.`image_id` AND t.`model` = s.`model`"
    )
    assert ResultsLayout(64).merge_condition(keys, [3, 7]) == (
        "t.`image_id` = s.`image_id` AND t.`model` = s.`model` "
        f"AND t.`{BUCKET}` = s.`{BUCKET}` AND t.`{BUCKET}` IN (3, 7)"
    )
