"""Checks of detector constructor arguments, shared so every detector rejects a bad setting the same way.

Each check raises DetectInputError naming the argument and the value it got, because settings come from the
command line or from a saved detector.json and are the user's to fix.
"""

from __future__ import annotations

from typing import Any

from detect.errors import DetectInputError


def check_positive_integers(**values: Any) -> None:
    """Raise unless every value is an int >= 1; a bool is rejected although Python counts it as an int."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DetectInputError(f"{name} must be a positive integer, got {value!r}")


def check_integer(name: str, value: Any) -> None:
    """Raise unless `value` is an int (such as a seed) and not a bool."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise DetectInputError(f"{name} must be an integer, got {value!r}")


def check_positive_number(name: str, value: Any) -> None:
    """Raise unless `value` is a real number > 0; NaN fails the comparison and is rejected too."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0.0:
        raise DetectInputError(f"{name} must be > 0, got {value!r}")


def check_non_negative_number(name: str, value: Any) -> None:
    """Raise unless `value` is a real number >= 0; NaN is rejected."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0.0:
        raise DetectInputError(f"{name} must be >= 0, got {value!r}")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raise unless `value` is one of `choices`."""
    if value not in choices:
        raise DetectInputError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
