"""The error policy of every data stage: a bad sample or shard is counted and logged, never fatal."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


class SampleErrorLog:
    """A WebDataset exception handler that logs each error with its shard (and key, when known) and counts it.

    Returning True makes WebDataset skip the failed item and continue. In a DataLoader each worker
    process keeps its own copy, so its `count` covers that worker only, while every error is still logged.
    """

    def __init__(self, description: str = "shard data"):
        self.description = description
        self.count = 0

    def __call__(self, error: Exception) -> bool:
        self.count += 1
        details = " ".join(str(arg) for arg in error.args if arg is not None) or type(error).__name__
        logger.warning(
            "skipped bad %s (error %d so far): %s: %s",
            self.description,
            self.count,
            type(error).__name__,
            details,
        )
        return True
