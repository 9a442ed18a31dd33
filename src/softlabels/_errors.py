"""Telling a user's error from a bug: the command line prints the first in one line and lets the second show.

softlabels validates its inputs with ``raise ValueError(...)`` / ``raise TypeError(...)`` statements whose messages
name the value or file (docs/CONTRIBUTING.md). The same exception types also come out of torch, numpy or a failed
call in our own code, and those are bugs whose traceback must stay visible. :func:`is_user_error` tells them apart
by where the exception was raised.
"""

from __future__ import annotations

import linecache
from types import TracebackType

__all__ = ["PATH_ERRORS", "is_user_error"]

PATH_ERRORS: tuple[type[OSError], ...] = (
    FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError, FileExistsError,
)  # fmt: skip
"""``OSError`` kinds about a path the user gave: a missing input, an output that cannot be written."""


def _raising_frame(tb: TracebackType | None) -> TracebackType | None:
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` reports bad input (one line for the user) rather than a bug (a traceback for us).

    - an ``OSError`` about a path (missing input, output not writable, a file where a folder is expected): yes;
    - a ``ValueError`` / ``TypeError`` raised by a ``raise`` statement in softlabels' own code (the house
      validation, which names the value or file): yes;
    - the same errors raised inside torch, numpy or another library, or by a failed call in our code (``f() got an
      unexpected keyword argument``): no — those are bugs to fix, and their traceback stays visible.

    Example:
        >>> def check(x):
        ...     raise ValueError(f"`x` must be positive; got {x}.")
        >>> try:
        ...     int("seven")  # a ValueError from inside Python: not ours
        ... except ValueError as err:
        ...     is_user_error(err)
        False
    """
    if isinstance(err, PATH_ERRORS):
        return True
    if not isinstance(err, ValueError | TypeError):
        return False
    frame = _raising_frame(err.__traceback__)
    if frame is None:
        return False
    module = str(frame.tb_frame.f_globals.get("__name__", ""))
    if module != "softlabels" and not module.startswith("softlabels."):
        return False
    line = linecache.getline(frame.tb_frame.f_code.co_filename, frame.tb_lineno).strip()
    return line.startswith("raise ")
