"""One exception type for every user-facing failure.

Command-line entry points catch it and print its message as a single line, so users see which file, key or
URL is wrong instead of a traceback.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable


class CxrError(Exception):
    """A failure caused by input, configuration or environment, explained in one line."""


def cli_entry(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a CLI main so a CxrError becomes one line on stderr and exit status 1."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs) or 0
        except CxrError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1

    return wrapped


class DiskSpaceError(CxrError, OSError):
    """A write that failed for lack of room (ENOSPC, EDQUOT, EFBIG), explained in one line.

    Also an OSError, so code that handles failed writes (``except OSError``) still sees one; ``errno`` and
    ``filename`` are set, but the message is the one line alone.
    """

    def __init__(self, message: str, errno: int | None = None, filename: str | None = None):
        super().__init__(message)
        self.errno = errno
        self.filename = filename

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
