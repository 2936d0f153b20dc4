"""The data layer's input-error class, and how to tell a machine's storage failure from a bug.

`ShardsInputError` is a mistake in what the user passed in, which they can fix. A full disk, a file-size
limit, a read-only or forbidden destination is the state of the machine, not a bug either: every command
of every layer reports it as one line through `environment_error_message`.
"""

from __future__ import annotations

import errno
import re

# OSError numbers that describe the machine (storage full or forbidden), which the user must fix there.
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES})
# numpy reports a short write without an errno: "12800 requested and 968 written".
SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


class ShardsInputError(Exception):
    """An unreadable video, a missing path, an invalid option or shard set: one line for the user.

    The `latentwatch` command prints it as `latentwatch: error: MESSAGE` and exits with status 2, so the
    message names the offending value and what to do about it.
    """


def environment_error_message(error: OSError) -> str | None:
    """Return the one line to print when `error` is a storage failure of the machine, else None (a bug)."""
    if error.errno in ENVIRONMENT_ERRNOS:
        return f"cannot write or read: {error}"
    if error.errno is None and SHORT_WRITE.search(str(error)):
        return f"a write was cut short, so the disk is probably full ({error})"
    return None
