"""``udfs.images.qwen_resize.smart_resize`` against the Qwen2-VL processor's own ``smart_resize``.

Ours must agree with transformers wherever transformers' answer is one the model accepts, and
raise only where transformers raises or answers with a size the model rejects.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfs.images.qwen_resize import (
    EXTREME_ASPECT_RATIO,
    INVALID_SIZE,
    PIXELS_PER_VISUAL_TOKEN,
    ResizeError,
    ResizePlan,
    smart_resize,
)
from udfs.settings import QWEN_PATCH_FACTOR, ImageSettings

FACTOR = QWEN_PATCH_FACTOR
DEFAULTS = ImageSettings()
# The processor hard-codes its limit; ours comes from the settings (default 200).
PROCESSOR_RATIO_LIMIT = 200

sides = st.integers(min_value=1, max_value=30_000)
# Budgets in whole tokens (like real configs) and in arbitrary pixel counts.
budgets = st.one_of(
    st.integers(min_value=1, max_value=20_000).map(lambda tokens: tokens * PIXELS_PER_VISUAL_TOKEN),
    st.integers(min_value=FACTOR * FACTOR, max_value=20_000_000),
)
fast = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def hf_smart_resize() -> Callable[..., tuple[int, int]]:
    """The processor's function; importing transformers takes seconds, so once per module."""
    # A plain import: if transformers moves this module, these fixed-point tests must fail,
    # not skip (the engines' processor is what they pin us to).
    module = importlib.import_module("transformers.models.qwen2_vl.image_processing_qwen2_vl")
    return module.smart_resize


def _hf_valid(
    hf: Callable[..., tuple[int, int]], height: int, width: int, low: int, high: int
) -> tuple[int, int] | None:
    """transformers' (height, width) when it is a size the model accepts, else None."""
    try:
        h_bar, w_bar = hf(height, width, factor=FACTOR, min_pixels=low, max_pixels=high)
    except ValueError:
        return None
    ratio = max(height, width) / min(height, width)
    accepted = (
        min(h_bar, w_bar) >= FACTOR
        and low <= h_bar * w_bar <= high
        and ratio < PROCESSOR_RATIO_LIMIT
        # Candid hands the processor the resized image, so the result's ratio counts too.
        and max(h_bar, w_bar) / min(h_bar, w_bar) < PROCESSOR_RATIO_LIMIT
    )
    return (h_bar, w_bar) if accepted else None


@fast
@given(height=sides, width=sides, low=budgets, high=budgets)
def test_agrees_with_transformers(hf_smart_resize, height, width, low, high) -> None:
    expected = _hf_valid(hf_smart_resize, height, width, low, high)
    try:
        plan = smart_resize(height, width, min_pixels=low, max_pixels=high)
    except ResizeError:
        assert expected is None, f"we refuse {width}x{height} but transformers gives {expected}"
        return
    assert (plan.height, plan.width) == expected


@fast
@given(height=sides, width=sides)
def test_agrees_with_transformers_under_default_budgets(hf_smart_resize, height, width) -> None:
    low, high = DEFAULTS.min_pixels, DEFAULTS.max_pixels
    expected = _hf_valid(hf_smart_resize, height, width, low, high)
    try:
        plan = smart_resize(height, width, min_pixels=low, max_pixels=high)
    except ResizeError as err:
        assert expected is None
        # Default budgets always have a size in bounds; only the ratio (the image's own, or
        # the planned size's) can rule an image out.
        assert "aspect ratio" in str(err)
        return
    assert (plan.height, plan.width) == expected


@fast
@given(height=sides, width=sides, low=budgets, high=budgets)
def test_every_plan_is_a_fixed_point_of_the_processor(
    hf_smart_resize, height, width, low, high
) -> None:
    try:
        plan = smart_resize(height, width, min_pixels=low, max_pixels=high)
    except ResizeError:
        return
    assert plan.height % FACTOR == 0 and plan.width % FACTOR == 0
    assert low <= plan.height * plan.width <= high
    again = hf_smart_resize(plan.height, plan.width, factor=FACTOR, min_pixels=low, max_pixels=high)
    assert again == (plan.height, plan.width)


@fast
@given(height=sides, width=sides, low=budgets, high=budgets)
def test_swapping_sides_swaps_the_plan(height, width, low, high) -> None:
    """Images are planned in stored orientation and then rotated, which relies on this."""
    try:
        plan = smart_resize(height, width, min_pixels=low, max_pixels=high)
    except ResizeError as err:
        with pytest.raises(ResizeError) as swapped_err:
            smart_resize(width, height, min_pixels=low, max_pixels=high)
        assert swapped_err.value.code == err.code
        return
    assert smart_resize(width, height, min_pixels=low, max_pixels=high) == plan.transposed()


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((256, 256), (252, 252)),  # rounded to the nearest multiple of 28
        ((10, 10), (56, 56)),  # upscaled to min_pixels (4 tokens)
        ((280, 224), (280, 224)),  # already on the grid
        ((4000, 3000), (728, 532)),  # downscaled under max_pixels, aspect kept
    ],
)
def test_known_sizes(size: tuple[int, int], expected: tuple[int, int]) -> None:
    width, height = size
    plan = smart_resize(
        height, width, min_pixels=DEFAULTS.min_pixels, max_pixels=DEFAULTS.max_pixels
    )
    assert (plan.width, plan.height) == expected
    assert plan.visual_tokens == plan.width * plan.height // 784


def test_ratio_at_the_limit_is_refused_and_just_below_is_planned() -> None:
    with pytest.raises(ResizeError, match="aspect ratio 200.0:1") as err:
        smart_resize(10, 2000, min_pixels=DEFAULTS.min_pixels, max_pixels=DEFAULTS.max_pixels)
    assert err.value.code == EXTREME_ASPECT_RATIO
    plan = smart_resize(10, 1999, min_pixels=DEFAULTS.min_pixels, max_pixels=DEFAULTS.max_pixels)
    assert plan.height == FACTOR


def test_thin_image_under_a_tight_budget_is_invalid_size() -> None:
    # 1500x10 needs a 28 px short side, hence a long side of 700 px = 19600 px > 3136.
    tight = 4 * PIXELS_PER_VISUAL_TOKEN
    with pytest.raises(ResizeError, match=r"1500x10 has no size within \[3136, 3136\]") as err:
        smart_resize(10, 1500, min_pixels=tight, max_pixels=tight)
    assert err.value.code == INVALID_SIZE


@pytest.mark.parametrize(
    ("height", "width", "low", "high", "text"),
    [
        (0, 10, 784, 784 * 4, "no pixels"),
        (10, -1, 784, 784 * 4, "no pixels"),
        (100, 100, 784 * 8, 784 * 4, "min_pixels 6272 > max_pixels 3136"),
    ],
)
def test_impossible_requests_are_invalid_size(
    height: int, width: int, low: int, high: int, text: str
) -> None:
    with pytest.raises(ResizeError, match=text) as err:
        smart_resize(height, width, min_pixels=low, max_pixels=high)
    assert err.value.code == INVALID_SIZE


def test_planned_ratio_at_the_limit_is_invalid_size(hf_smart_resize) -> None:
    """60x11900 (198:1) would be planned as 8904x28 (318:1): the processor accepts the
    original but refuses that resized image, so it must not be handed over."""
    low, high = DEFAULTS.min_pixels, DEFAULTS.max_pixels
    assert hf_smart_resize(60, 11900, factor=FACTOR, min_pixels=low, max_pixels=high) == (28, 8904)
    with pytest.raises(ValueError, match="aspect ratio"):
        hf_smart_resize(28, 8904, factor=FACTOR, min_pixels=low, max_pixels=high)
    with pytest.raises(ResizeError, match=r"resized to 8904x28, aspect ratio 318.0:1") as err:
        smart_resize(60, 11900, min_pixels=low, max_pixels=high)
    assert err.value.code == INVALID_SIZE


def test_custom_ratio_limit_is_honoured() -> None:
    with pytest.raises(ResizeError) as err:
        smart_resize(100, 1000, min_pixels=784, max_pixels=784 * 512, max_aspect_ratio=10)
    assert err.value.code == EXTREME_ASPECT_RATIO
    assert ResizePlan(56, 28).transposed() == ResizePlan(28, 56)
