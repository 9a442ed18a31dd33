"""Reading YAML files strictly: a duplicated key is an error, not a silently dropped block.

PyYAML (and the YAML 1.1 loaders built on it) keeps the *last* of two equal keys in a mapping, so a config with two
``data:`` sections silently loses the first. :func:`load_yaml` refuses such a file, naming the key and both lines,
and turns unreadable files and syntax errors into one-line errors naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["load_yaml", "parse_yaml"]


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that raises on a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:  # the mapping's own keys (a `<<` merge may be overridden, as YAML defines)
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} on lines {seen[key]} and {line} (YAML keeps only the last)",
                    key_node.start_mark,
                )  # fmt: skip
            seen.setdefault(key, line)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping)


def _message(err: yaml.YAMLError) -> str:
    problem = getattr(err, "problem", None) or str(err)
    mark = getattr(err, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None and "line" not in problem else ""
    return " ".join(f"{problem}{where}".split())


def parse_yaml(text: str, *, what: str) -> Any:
    r"""Parse YAML ``text`` strictly (duplicate keys refused); ``what`` names the source in errors.

    Raises:
        ValueError: a syntax error or a duplicated key, naming ``what`` and the line.

    Example:
        >>> parse_yaml("a: 1\nb: {c: 2}", what="config")
        {'a': 1, 'b': {'c': 2}}
        >>> parse_yaml("data: 1\ndata: 2", what="config 'x.yaml'")
        Traceback (most recent call last):
            ...
        ValueError: config 'x.yaml' is not valid: duplicate key 'data' on lines 1 and 2 (YAML keeps only the last).
    """
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as err:
        raise ValueError(f"{what} is not valid: {_message(err)}.") from err


def load_yaml(path: Path | str, *, what: str) -> Any:
    r"""Read and parse the YAML file ``path`` strictly; ``what`` names it in errors (e.g. ``"--config"``).

    Returns:
        The parsed content (``None`` for an empty file).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a folder, an unreadable file, invalid UTF-8, a syntax error or a duplicated key (the file named).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = (Path(tmp) / "c.yaml").write_text("seed: 3\n")
        ...     load_yaml(Path(tmp) / "c.yaml", what="--config")
        {'seed': 3}
    """
    path = Path(path)
    label = f"{what} {str(path)!r}"
    if path.is_dir():
        raise ValueError(f"{label} is a folder; give a YAML file.")
    if not path.exists():
        raise FileNotFoundError(f"{label} does not exist.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{label} could not be read: {err}.") from err
    return parse_yaml(text, what=label)
