"""The data layer's input-error class: a mistake in what the user passed in, which they can fix."""

from __future__ import annotations


class ShardsInputError(Exception):
    """An unreadable video, a missing path, an invalid option or shard set: one line for the user.

    The `latentwatch` command prints it as `latentwatch: error: MESSAGE` and exits with status 2, so the
    message names the offending value and what to do about it.
    """
