"""Micro-credits: the only money unit in the gateway (1 credit = 1,000,000 micro-credits).

Money is always an ``int``. These helpers convert to and from the decimal strings people read and
type (admin API, ``/quota``, logs), exactly, with ``decimal`` — never through ``float``.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

MICRO_PER_CREDIT = 1_000_000


def format_credits(micro: int) -> str:
    """``1234567`` -> ``"1.234567"``; trailing zeros kept to six places (``"2.000000"``)."""
    if isinstance(micro, bool) or not isinstance(micro, int):
        raise TypeError(f"micro-credits must be an int, got {type(micro).__name__}")
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO_PER_CREDIT)
    return f"{sign}{whole}.{frac:06d}"


def parse_credits(text: str) -> int:
    """``"1.5"`` -> ``1500000``. More than six decimal places is an error, not a rounding."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation as exc:
        raise ValueError(f"not a credit amount: {text!r} (expected a decimal number like 12.5)") from exc
    if not value.is_finite():
        raise ValueError(f"not a credit amount: {text!r}")
    micro = value * MICRO_PER_CREDIT
    if micro != micro.to_integral_value(rounding=ROUND_HALF_EVEN):
        raise ValueError(f"{text!r} has more than 6 decimal places; the smallest unit is 0.000001 credit")
    return int(micro)
