"""``create_method`` checks every argument when called, not at the first batch: one line naming parameter and method.

The bad values of each option are derived from its default in ``method_defaults(name)`` (a float gets a negative,
a NaN and a string; an int 0, a fraction and a string; a string option an unknown name and a number; a bool a string;
an option that defaults to ``None`` an arbitrary object), so a method or option added later is covered too.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch

from softlabels.methods import create_method, list_methods, method_defaults

BAD_NUM_CLASSES = [0, 1, -2, 2.5, "4", True, None]


def bad_values(default: Any) -> list[Any]:
    """Values no option with this default accepts."""
    if isinstance(default, bool):
        return ["yes", 1]
    if isinstance(default, int):
        return [0, 2.5, "3"]  # 0: no window, width, sample count or (as ignore_index) a class index
    if isinstance(default, float):
        return [-1.0, float("nan"), "big"]
    if isinstance(default, str):
        return ["nope", 3]
    return [object(), "x"] if isinstance(default, tuple) else [object()]


def show(value: Any) -> str:
    return "object()" if type(value) is object else repr(value)


CASES = [
    pytest.param(name, option, bad, id=f"{name}-{option}={show(bad)}")
    for name in list_methods()
    for option, default in method_defaults(name).items()
    for bad in bad_values(default)
]


def assert_one_line_naming(error: pytest.ExceptionInfo, parameter: str, name: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    assert f"`{parameter}`" in message and f"method {name!r}" in message, message


@pytest.mark.parametrize("bad", BAD_NUM_CLASSES, ids=repr)
@pytest.mark.parametrize("name", list_methods())
def test_bad_num_classes_is_refused_by_create_method(name, bad):
    with pytest.raises((ValueError, TypeError)) as error:
        create_method(name, bad)
    assert_one_line_naming(error, "num_classes", name)
    kind = TypeError if isinstance(bad, bool) or not isinstance(bad, int) else ValueError
    assert error.type is kind


@pytest.mark.parametrize(("name", "option", "bad"), CASES)
def test_bad_option_is_refused_by_create_method(name, option, bad):
    with pytest.raises((ValueError, TypeError)) as error:
        create_method(name, 4, **{option: bad})
    assert_one_line_naming(error, option, name)


@pytest.mark.parametrize(
    ("name", "options", "pattern"),
    [
        ("ls", {"epsilon": 2}, r"`epsilon` of method 'ls' must be a float in \[0, 1\]; got 2\."),
        ("ls", {"epsilon": "big"}, r"`epsilon` of method 'ls' must be a float; got str 'big'\."),
        ("ls", {"epsilon": 0.9, "convention": "others", "ignore_index": 1}, r"`ignore_index` .*class index.* got 1"),
        ("svls", {"sigma": -1}, r"method 'svls' of create_method: `sigma` of svls must be a finite float > 0"),
        ("svls", {"spacing": (1.0, 1.0, 1.0, 1.0)}, r"`spacing` of svls must hold 2 finite floats"),
        ("hard", {"ignore_index": 3}, r"`ignore_index` .*must not be a class index in \[0, 4\); got 3"),
        ("nacl", {"kernel": "gaussian", "padding": "zeros"}, r"`padding` .*'replicate' or None"),
        ("confidence_threshold", {"tau": 1.5}, r"`tau` of confidence_threshold must be a float in \[0, 1\]"),
    ],
)
def test_messages_name_the_parameter_and_quote_the_value(name, options, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern) as error:
        create_method(name, 4, **options)
    assert f"method {name!r}" in str(error.value)


def test_the_num_classes_message():
    with pytest.raises(ValueError, match=re.escape("`num_classes` of method 'ls' must be an int >= 2; got 0.")):
        create_method("ls", num_classes=0)
    with pytest.raises(TypeError, match=re.escape("`num_classes` of method 'svls' must be an int; got str '4'.")):
        create_method("svls", "4")


@pytest.mark.parametrize("num_classes", [2, 4])
@pytest.mark.parametrize("name", list_methods())
def test_every_method_still_builds_with_its_defaults(name, num_classes):
    method = create_method(name, num_classes)
    assert method.name == name and method.num_classes == num_classes
    assert isinstance(method.loss, torch.nn.Module)
