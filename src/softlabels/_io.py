"""Writing outputs safely: atomic file writes with the user's normal file mode, and output paths checked first.

Every file softlabels writes goes through :func:`atomic_write`: a temporary file in the destination folder, flushed
to disk, given the mode a plain ``open()`` would give it (``0666 & ~umask``; ``mkstemp`` alone gives ``0600``) and
renamed over the target, so a reader (or a process killed mid-write) sees the old file or the new one, whole.
Temporary files are named ``.<name>.<random>.tmp``; :func:`remove_orphan_temporaries` deletes those a killed process
left behind.

Commands check their output paths with :func:`check_output_folder` / :func:`check_output_file` *before* doing any
work, so a bad path (a file where a folder is expected, a folder without write permission) is one clear error and
nothing is written.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "check_output_file",
    "check_output_folder",
    "json_safe",
    "remove_orphan_temporaries",
    "staged_folder",
]

TMP_SUFFIX = ".tmp"


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path | str, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then move it to ``path`` in one step.

    Args:
        path: the destination; its folder must exist.
        write: writes the content into the binary file object it gets.

    Returns:
        ``path``.

    Raises:
        Whatever ``write`` raises; the temporary file is removed and ``path`` left as it was.

    Example:
        >>> import stat, tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     out = atomic_write(Path(tmp) / "a.txt", lambda f: f.write(b"hello"))
        ...     mode = stat.S_IMODE(out.stat().st_mode)
        ...     out.read_text(), sorted(p.name for p in Path(tmp).iterdir()), mode == 0o666 & ~_umask()
        ('hello', ['a.txt'], True)
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: Path | str, payload: bytes) -> Path:
    """:func:`atomic_write` of a ``bytes`` payload, creating the parent folders.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     atomic_write_bytes(Path(tmp) / "a" / "b.txt", b"x").read_bytes()
        b'x'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda handle: handle.write(payload))


def remove_orphan_temporaries(folder: Path | str) -> list[Path]:
    """Delete the temporary files ``.<name>.<random>.tmp`` that a killed :func:`atomic_write` left in ``folder``.

    Only call this where no other process is writing into ``folder`` (e.g. at the start of a run).

    Returns:
        The files removed.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = (Path(tmp) / ".last.ckpt.k2j1.tmp").write_bytes(b"half")
        ...     _ = (Path(tmp) / "last.ckpt").write_bytes(b"whole")
        ...     [p.name for p in remove_orphan_temporaries(tmp)], sorted(p.name for p in Path(tmp).iterdir())
        (['.last.ckpt.k2j1.tmp'], ['last.ckpt'])
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.glob(f".*{TMP_SUFFIX}")):
        if path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists."""
    current = path.absolute()
    while not os.path.lexists(current) and current != current.parent:
        current = current.parent
    return current


def check_output_folder(path: Path | str, *, what: str) -> Path:
    """Check that ``path`` is a folder softlabels can write into, or can create; raise one clear error if not.

    Nothing is created: the check runs before a command does any work.

    Args:
        path: the output folder.
        what: how the command names it in the message (e.g. ``"--output"``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``path`` (or an ancestor) is a file, or the folder that would hold the output is not writable.

    Example:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = (Path(tmp.name) / "f").write_text("x")
        >>> check_output_folder(Path(tmp.name) / "new" / "deeper", what="--output").name
        'deeper'
        >>> try:
        ...     check_output_folder(Path(tmp.name) / "f", what="--output")
        ... except ValueError as err:
        ...     str(err).endswith("exists and is not a folder.")
        True
        >>> tmp.cleanup()
    """
    path = Path(path)
    if os.path.exists(path) and not path.is_dir():
        raise ValueError(f"{what} {str(path)!r} exists and is not a folder.")
    _check_creatable(path, path, what)
    return path


def _check_creatable(target: Path, folder: Path, what: str) -> None:
    """Raise unless ``folder`` is (or can be made) a writable folder, for writing ``target``."""
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise ValueError(f"{what} {str(target)!r} cannot be created: {str(existing)!r} is a file, not a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {str(target)!r} is not writable: no write permission on {str(existing)!r}.")


def check_output_file(path: Path | str, *, what: str) -> Path:
    """Check that the file ``path`` can be written (replaced, or created in a writable folder); raise if not.

    Raises:
        ValueError: ``path`` is a folder, its folder is a file or is not writable.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     check_output_file(Path(tmp) / "a.ckpt", what="--output").name
        'a.ckpt'
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a folder; give a file name.")
    _check_creatable(path, path.parent, what)
    return path


def _siblings(out: Path, kind: str) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.{kind}-*")) if out.parent.is_dir() else []


@contextmanager
def staged_folder(out: Path | str) -> Iterator[Path]:
    """Build a folder's new content in a staging folder beside it, then swap it in: never half old, half new.

    Yields an empty folder ``.<name>.partial-<random>`` beside ``out``. When the block ends normally, the old
    ``out`` (if any) is renamed aside, the staging folder renamed to ``out`` and the old content deleted; when the
    block raises, the staging folder is deleted and ``out`` is left as it was. A process killed mid-way leaves the
    old ``out`` whole (or, between the two renames, as ``.<name>.old-<random>``): the next call puts such an old
    folder back and removes stale staging folders before it starts.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     out = Path(tmp) / "pred"
        ...     with staged_folder(out) as stage:
        ...         _ = (stage / "a.txt").write_text("new")
        ...     sorted(p.name for p in Path(tmp).iterdir()), (out / "a.txt").read_text()
        (['pred'], 'new')
    """
    out = Path(out)
    if not os.path.lexists(out):
        for previous in _siblings(out, "old")[:1]:
            os.replace(previous, out)  # a swap killed between its two renames: the old output comes back
    for stale in _siblings(out, "partial") + _siblings(out, "old"):
        shutil.rmtree(stale, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    os.chmod(stage, 0o777 & ~_umask())  # mkdtemp creates 0700
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if os.path.lexists(out):
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))  # a unique name ...
        os.rmdir(old)  # ... that the old output takes
        os.replace(out, old)
    os.replace(stage, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def json_safe(x: Any) -> Any:
    """Replace NaN/inf floats by ``None`` recursively (strict JSON has no NaN).

    Example:
        >>> json_safe({"a": [1.0, float("nan")], "b": float("inf")})
        {'a': [1.0, None], 'b': None}
    """
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    return x
