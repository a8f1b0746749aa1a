"""The distributions behind the intervals, without scipy: the regularised incomplete beta
function (its continued fraction, DLMF 8.17.22, evaluated by the modified Lentz method), the
beta quantile by bisection on it, and Student's t quantile through the same function. The tests
hold each against scipy.
"""

from __future__ import annotations

import math

# Continued fraction of the incomplete beta: terms until the relative change is below _EPS.
_EPS = 1e-14
_MAX_TERMS = 10_000
# Bisection steps for a quantile in [0, 1]: 2^-60 is far below any printed digit.
_BISECT_STEPS = 60


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (modified Lentz), valid for x < (a+1)/(a+b+2)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, _MAX_TERMS):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


def beta_cdf(x: float, a: float, b: float) -> float:
    """The regularised incomplete beta I_x(a, b): the Beta(a, b) distribution at ``x``.

    Example:
        >>> round(beta_cdf(0.5, 2, 2), 12)
        0.5
    """
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1 - math.exp(log_front) * _beta_fraction(b, a, 1 - x) / b


def beta_quantile(q: float, a: float, b: float) -> float:
    """The ``q`` quantile of Beta(a, b), by bisection (the cdf is increasing)."""
    low, high = 0.0, 1.0
    for _ in range(_BISECT_STEPS):
        mid = (low + high) / 2
        low, high = (mid, high) if beta_cdf(mid, a, b) < q else (low, mid)
    return (low + high) / 2


def t_quantile(q: float, df: float) -> float:
    """The ``q`` quantile (q > 1/2) of Student's t with ``df`` degrees of freedom, from
    P(|T| > t) = I_{df/(df+t^2)}(df/2, 1/2), by bisection.

    Example:
        >>> round(t_quantile(0.975, 9), 3)
        2.262
    """
    if not 0.5 < q < 1 or df <= 0:
        raise ValueError(f"need 1/2 < q < 1 and df > 0, got q={q}, df={df}")
    low, high = 0.0, 1.0
    while 1 - beta_cdf(df / (df + high * high), df / 2, 0.5) / 2 < q:
        high *= 2
    for _ in range(_BISECT_STEPS):
        mid = (low + high) / 2
        below = 1 - beta_cdf(df / (df + mid * mid), df / 2, 0.5) / 2 < q
        low, high = (mid, high) if below else (low, mid)
    return (low + high) / 2
