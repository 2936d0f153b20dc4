"""Shared pytest options: `--exhaustive` runs every variant of the fault suite instead of a seeded sample."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--exhaustive",
        action="store_true",
        help="run every kill moment and fault variant (minutes longer); by default a seeded sample runs",
    )


@pytest.fixture(scope="session")
def exhaustive(request: pytest.FixtureRequest) -> bool:
    """True when the fault suite should try every variant rather than its default sample."""
    return bool(request.config.getoption("--exhaustive"))
