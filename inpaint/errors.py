"""The error family of inpaint, and the one place a command turns an error into its one-line message.

Library code raises :class:`InpaintError` subclasses (``inpaint.data.io.InputError`` for data and files,
``inpaint.config.ConfigError`` for configuration) whose message is one line naming the file or key and
the fix; commands catch them at their boundary and call :func:`report`.
"""

from __future__ import annotations

import sys

EXIT_ERROR = 2


class InpaintError(ValueError):
    """A user-facing error: the message is one line naming the file (or key) and the fix."""


def report(error: BaseException | str, *notes: str) -> int:
    """Print ``error: MESSAGE`` (and indented notes) to stderr; returns the exit code of a failed command."""
    print(f"error: {error}", file=sys.stderr)
    for note in notes:
        print(f"       {note}", file=sys.stderr)
    return EXIT_ERROR
