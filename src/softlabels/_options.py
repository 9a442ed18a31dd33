"""Resolving option strings with a clear error: the one lookup helper every string option goes through."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def look_up_option(name: str, value: object, allowed: Iterable[str], *, where: str) -> str:
    """Return ``value`` if it is one of ``allowed``; otherwise raise a ``ValueError`` naming all of them.

    The error quotes the received value, lists the allowed ones and proposes the closest match, e.g.
    ``"`mode` of calibration_error must be one of 'classwise', 'marginal', 'top_label'; got 'toplabel'
    (did you mean 'top_label'?)."``

    Args:
        name: the parameter name, quoted in the message.
        value: what the caller passed.
        allowed: the valid strings.
        where: the public function or class that received it.

    Returns:
        ``value``, unchanged.

    Raises:
        ValueError: ``value`` is not one of ``allowed``.

    Example:
        >>> look_up_option("norm", "l1", ("l1", "l2", "max"), where="calibration_error")
        'l1'
    """
    options = sorted(allowed)
    if isinstance(value, str) and value in options:
        return value
    listed = ", ".join(repr(o) for o in options)
    hint = ""
    if isinstance(value, str):
        lowered = {o.lower(): o for o in options}
        close = difflib.get_close_matches(value.lower(), list(lowered), n=1)
        if close:
            hint = f" (did you mean {lowered[close[0]]!r}?)"
    raise ValueError(f"`{name}` of {where} must be one of {listed}; got {value!r}{hint}.")
