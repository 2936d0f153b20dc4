"""Exception classes of the representation layer that mean "the user's input is wrong".

The `latentwatch` dispatcher and `pretrain.py` print these as one line and exit with status 2; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class PretrainError(Exception):
    """An input mistake the user can fix: a bad config, a missing shard set, an unusable checkpoint."""


class ConfigError(PretrainError):
    """A config file or command-line override that does not match the config schema."""


class CheckpointError(PretrainError):
    """A checkpoint that is missing, corrupt, or written by another method or format version."""
