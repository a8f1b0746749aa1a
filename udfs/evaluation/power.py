"""Sample size for comparing two prompt versions on the same images: the smallest difference in
a yes/no rate that a sample could detect, and the images needed to detect a given one.

Both come from Connor's (1987) formula for McNemar's test in a paired design,

    n = (z_{1-alpha/2} * sqrt(psi) + z_{power} * sqrt(psi - delta^2))^2 / delta^2,

where ``delta`` is the difference of the two versions' rates and ``psi`` the discordance: the
share of images on which they disagree. ``psi`` matters as much as ``delta``: two prompts that
flag the same images have a small ``psi``, and a small sample already detects their difference.

Where ``psi`` comes from: the observed discordance of the two versions when there is one (a
compare or an eval of two versions). With a single version, or when the observed discordance
is too small for the difference asked about (a difference ``delta`` needs ``psi >= delta``),
the versions' outcomes are assumed independent at the observed rate ``p``:
``psi = p(1-q) + q(1-p)`` with ``q = p + delta`` (``p - delta`` above 1/2). Independent
outcomes disagree more than real prompt versions do, so the figures are then conservative:
more images, larger detectable differences. Each answer says which assumption it used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from udfs.evaluation.intervals import z_value

DEFAULT_ALPHA = 0.05
DEFAULT_POWER = 0.8
OBSERVED = "observed discordance"
INDEPENDENT = "independent outcomes assumed"
_BISECT_STEPS = 80


@dataclass(frozen=True)
class PowerAnswer:
    """A detectable difference or a number of images, and how it was reached.

    Attributes:
        value: the smallest detectable difference (a rate), or the images needed; None when
            no difference is detectable (the rate leaves no room) or the target is impossible.
        discordance: the ``psi`` used (at ``value`` under the independence model).
        basis: ``OBSERVED`` or ``INDEPENDENT``.
    """

    value: float | None
    discordance: float
    basis: str


def _check(alpha: float, power: float) -> None:
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must be in (0, 1), got {alpha}, {power}")


def connor_images(delta: float, discordance: float, alpha: float = DEFAULT_ALPHA,
                  power: float = DEFAULT_POWER) -> float:
    """Connor's n (not rounded) for a difference ``delta`` at discordance ``discordance``.

    Raises:
        ValueError: ``delta`` is not in (0, discordance].

    Example:
        >>> round(connor_images(0.1, 0.2), 1)
        154.6
    """
    _check(alpha, power)
    if not 0 < delta <= discordance <= 1:
        raise ValueError(f"need 0 < delta <= discordance <= 1, got {delta}, {discordance}")
    za = z_value(1 - alpha)
    zb = z_value(2 * power - 1)  # one-sided quantile of `power`
    return (za * math.sqrt(discordance) + zb * math.sqrt(discordance - delta**2)) ** 2 / delta**2


def independent_discordance(rate: float, delta: float) -> float:
    """The discordance of two independent versions with rates ``rate`` and ``rate +- delta``
    (towards 1/2, where it is the larger). It is never below ``delta`` (it exceeds it by
    ``2 p (1 - q)``); the floor only absorbs rounding.

    Example:
        >>> independent_discordance(0.0, 0.1), round(independent_discordance(0.1, 0.05), 6)
        (0.1, 0.22)
    """
    other = rate + delta if rate <= 0.5 else rate - delta
    return max(delta, rate * (1 - other) + other * (1 - rate))


def _possible(rate: float, delta: float) -> bool:
    other = rate + delta if rate <= 0.5 else rate - delta
    return delta > 0 and 0 <= other <= 1


def detectable_difference(
    images: int, rate: float, discordance: float | None = None, *,
    alpha: float = DEFAULT_ALPHA, power: float = DEFAULT_POWER,
) -> PowerAnswer:
    """The smallest difference in a yes/no rate that ``images`` paired images detect with
    ``power`` at two-sided level ``alpha``.

    Args:
        images: paired images.
        rate: the baseline's observed rate.
        discordance: the observed share of images where the versions disagree (None: one
            version only).

    Example:
        >>> a = detectable_difference(200, 0.1, 0.08)
        >>> round(a.value, 3), a.basis
        (0.056, 'observed discordance')
    """
    _check(alpha, power)
    if images < 1:
        raise ValueError(f"images must be at least 1, got {images}")
    if discordance:
        found = _smallest(lambda d: connor_images(d, discordance, alpha, power) <= images,
                          discordance)
        if found is not None:
            return PowerAnswer(found, discordance, OBSERVED)
    room = 1 - rate if rate <= 0.5 else rate

    def enough(delta: float) -> bool:
        psi = independent_discordance(rate, delta)
        return connor_images(delta, psi, alpha, power) <= images

    found = _smallest(enough, room)
    psi = independent_discordance(rate, found) if found is not None else 0.0
    return PowerAnswer(found, psi, INDEPENDENT)


def _smallest(enough, largest: float) -> float | None:
    """The smallest delta in (0, largest] for which ``enough(delta)`` holds (it is monotone:
    a larger difference needs fewer images); None when even ``largest`` is not enough."""
    if largest <= 0 or not enough(largest):
        return None
    low, high = 0.0, largest
    for _ in range(_BISECT_STEPS):
        mid = (low + high) / 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high


def images_needed(
    delta: float, rate: float, discordance: float | None = None, *,
    alpha: float = DEFAULT_ALPHA, power: float = DEFAULT_POWER,
) -> PowerAnswer:
    """Paired images needed to detect a difference ``delta`` in a yes/no rate.

    Example:
        >>> images_needed(0.05, 0.1, 0.08).value
        249
        >>> images_needed(0.05, 0.1).basis
        'independent outcomes assumed'
    """
    _check(alpha, power)
    if not 0 < delta < 1:
        raise ValueError(f"the difference to detect must be in (0, 1), got {delta}")
    if discordance and discordance >= delta:
        n = connor_images(delta, discordance, alpha, power)
        return PowerAnswer(math.ceil(n - 1e-9), discordance, OBSERVED)
    if not _possible(rate, delta):
        return PowerAnswer(None, 0.0, INDEPENDENT)
    psi = independent_discordance(rate, delta)
    return PowerAnswer(math.ceil(connor_images(delta, psi, alpha, power) - 1e-9), psi,
                       INDEPENDENT)
