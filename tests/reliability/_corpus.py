"""The reliability corpus's helpers: run a command, and check a refusal is one line and touched nothing.

Every corpus test follows the same three steps:

1. ``before = snapshot(folder, ...)``: every file (content and mode) and folder under the roots, symlinks as links;
2. ``err = user_error(argv, capsys, "needle", ...)``: the command exits with 2 and prints exactly one line on stderr,
   ``softlabels <command>: error: ...``, holding every needle (the file or value it names) and no traceback;
3. ``assert snapshot(folder, ...) == before``: the refused command changed, added or removed nothing.

``run_subprocess`` runs the real ``python -m softlabels`` for the cases where only a separate process shows the
behaviour (an uncaught exception's traceback, a kill).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from softlabels.cli import main

Entry = tuple[str, int, bytes]  # kind ("file", "dir", "link"), mode, content (file bytes or link target)


def snapshot(*roots: Path | str) -> dict[str, Entry]:
    """Everything under ``roots`` (the roots included), byte for byte; a missing root is recorded as missing."""
    out: dict[str, Entry] = {}
    for root in map(Path, roots):
        if not os.path.lexists(root):
            out[str(root)] = ("missing", 0, b"")
            continue
        paths = [root, *sorted(root.rglob("*"))] if root.is_dir() and not root.is_symlink() else [root]
        for path in paths:
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                out[str(path)] = ("link", 0, os.readlink(path).encode())
            elif stat.S_ISDIR(info.st_mode):
                out[str(path)] = ("dir", stat.S_IMODE(info.st_mode), b"")
            else:
                out[str(path)] = ("file", stat.S_IMODE(info.st_mode), path.read_bytes())
    return out


def user_error(argv: Sequence[str], capsys, *needles: str) -> str:
    """Run ``softlabels argv`` in-process; assert exit 2 and one stderr line naming every needle; return it."""
    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    err = captured.err
    assert code == 2, f"exit {code}, stderr {err!r}"
    assert "Traceback" not in err, err
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err!r}"
    line = lines[0]
    assert line.startswith(f"softlabels {argv[0]}: error: "), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


class Completed(NamedTuple):
    """A finished subprocess: exit code, stdout, stderr."""

    code: int
    out: str
    err: str


def run_subprocess(argv: Sequence[str], *, cwd: Path | str | None = None, timeout: float = 300) -> Completed:
    """Run ``python -m softlabels argv`` in a separate process (no progress bars); return its exit code and output."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "softlabels", *argv], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip
    return Completed(proc.returncode, proc.stdout, proc.stderr)
