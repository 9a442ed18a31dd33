"""The method registry: ``@register_method(name)`` factories, listed, their defaults read, and built by name.

A factory ``(num_classes, *, task, **params) → Method`` lives in its family's module (``methods/smoothing.py``,
``methods/spatial.py``, ...) and registers itself with the decorator; its keyword defaults are the method's defaults
(``docs/methods.md``). The package ``__init__`` imports every family module, so importing ``softlabels.methods``
fills the registry.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from softlabels._errors import is_user_error
from softlabels._options import look_up_option
from softlabels.methods.base import BOTH, Method, Task
from softlabels.targets.label_checks import _check_num_classes

__all__ = ["create_method", "list_methods", "method_defaults", "register_method"]

_REGISTRY: dict[str, tuple[Callable[..., Method], tuple[Task, ...], str]] = {}


def register_method(name: str, *, tasks: tuple[Task, ...] = BOTH) -> Callable[[Callable[..., Method]], Callable]:
    """Register a factory ``(num_classes, *, task, **params) → Method`` under ``name``; its defaults are the method's.

    The first line of the factory's docstring becomes the method's ``description``.

    Raises:
        ValueError: ``name`` is registered already.

    Example:
        >>> "svls" in list_methods()
        True
    """

    def decorator(factory: Callable[..., Method]) -> Callable[..., Method]:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered.")
        summary = (inspect.getdoc(factory) or "").splitlines()[0]
        _REGISTRY[name] = (factory, tasks, summary)
        return factory

    return decorator


def list_methods(task: Task | None = None) -> list[str]:
    """The registered method names (for ``task``, if given), sorted.

    Example:
        >>> {"hard", "ls", "ols", "tfkd", "svls", "dml"} <= set(list_methods())
        True
        >>> "nacl" in list_methods("classification")
        False
    """
    if task is not None:
        look_up_option("task", task, BOTH, where="list_methods")
    return sorted(n for n, (_, tasks, _) in _REGISTRY.items() if task is None or task in tasks)


def method_defaults(name: str) -> dict[str, Any]:
    """The default parameters of method ``name`` (what :func:`create_method` uses when not overridden).

    Example:
        >>> method_defaults("svls")
        {'sigma': 1.0, 'kernel_size': 3, 'spacing': None}
    """
    factory = _REGISTRY[look_up_option("name", name, _REGISTRY, where="method_defaults")][0]
    params = list(inspect.signature(factory).parameters.values())[1:]
    return {p.name: p.default for p in params if p.name != "task"}


def create_method(name: str, num_classes: int, *, task: Task | None = None, **overrides: Any) -> Method:
    """Build the registered method ``name`` for ``num_classes`` classes, overriding its defaults by keyword.

    Every argument is checked here, when the method is built, not at its first batch: ``num_classes`` must be an
    int ``>= 2`` (every loss takes logits with ``C >= 2``, segmentation and classification alike), and the target
    construction and the loss are built eagerly, so each option goes through the checks of the function that uses
    it. A bad value raises a one-line ``ValueError`` (``TypeError`` for a wrong type) naming the parameter and the
    method.

    Args:
        name: a name of :func:`list_methods`.
        num_classes: number of classes ``C >= 2``.
        task: ``"classification"`` or ``"segmentation"``, to check the method applies and pick task-specific
            defaults (the MbLS margin); ``None`` for the task-independent defaults.
        **overrides: parameters of the method (see :func:`method_defaults`).

    Returns:
        A :class:`~softlabels.methods.base.Method`.

    Raises:
        TypeError: ``num_classes`` or an option of the wrong type.
        ValueError: unknown name (the valid ones and the closest match are listed), unknown parameter, a method
            that is not defined for ``task``, or a bad value of ``num_classes`` or of an option.

    Example:
        >>> create_method("flsd", num_classes=4).loss
        FocalLoss(gamma=3.0, gamma_bands=((0.2, 5.0), (0.5, 3.0)), reduction='mean', ignore_index=None)
    """
    name = look_up_option("name", name, _REGISTRY, where="create_method")
    factory, tasks, summary = _REGISTRY[name]
    if task is not None:
        look_up_option("task", task, BOTH, where="create_method")
        if task not in tasks:
            raise ValueError(f"method {name!r} of create_method is defined for {list(tasks)}; got task={task!r}.")
    valid = method_defaults(name)
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} of method {name!r} in create_method; valid: {sorted(valid) or 'none'}."
        )
    where = f"method {name!r}"
    _check_num_classes(num_classes, where, 2)
    for key, value in overrides.items():
        if isinstance(valid[key], bool) and not isinstance(value, bool):
            raise TypeError(f"`{key}` of {where} must be a bool; got {type(value).__name__} {value!r}.")
    try:
        method = factory(num_classes, task=task, **overrides)
    except (TypeError, ValueError) as error:
        if not is_user_error(error):
            raise  # a bug, not a bad option: it keeps its traceback
        raise _naming_the_method(error, where) from error
    method.name, method.tasks, method.num_classes, method.description = name, tasks, num_classes, summary
    resolved = {**valid, **overrides, **method.params}  # a factory may record values it resolved itself
    method.params = {key: _describe(value) for key, value in resolved.items()}
    return method


def _naming_the_method(error: TypeError | ValueError, where: str) -> TypeError | ValueError:
    """The error of a check inside a factory, its message prefixed by the method unless it names it already."""
    kind = ValueError if isinstance(error, ValueError) else TypeError
    return error if where in str(error) else kind(f"{where} of create_method: {error}")


def _describe(value: Any) -> Any:
    """A parameter as plain data for provenance: modules and other objects by their type name."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple | list):
        return [_describe(v) for v in value]
    return f"<{type(value).__name__}>"
