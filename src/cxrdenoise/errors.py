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
