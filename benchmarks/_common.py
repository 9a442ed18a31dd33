"""Shared helpers of the calibration benchmarks: machine info, atomic result files, float64 NumPy reference, RSS."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
N_BINS = 15


# --------------------------------------------------------------------------------------------- machine and files
def machine_info() -> dict[str, Any]:
    """CPU model, cores, RAM, library versions, date and git commit (if any)."""
    import psutil
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str] = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("torchmetrics", "monai", "numpy", "softlabels"):
        try:
            versions[name] = __import__(name).__version__
        except (ImportError, AttributeError):
            versions[name] = "not available"
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "src"], capture_output=True, text=True, check=True
        ).stdout.strip()
        commit += " (src/ has uncommitted changes)" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "not available"
    return {
        "cpu_model": cpu,
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "versions": versions,
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit,
    }


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_results(name: str, payload: dict[str, Any], markdown: str) -> None:
    """``results/<name>.json`` and ``results/<name>.md``, both atomically."""
    write_atomic(RESULTS / f"{name}.json", json.dumps(payload, indent=2, default=_json_default) + "\n")
    write_atomic(RESULTS / f"{name}.md", markdown)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub Markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def fmt(x: float | None, spec: str = ".3e") -> str:
    """Format a number, or an em dash for ``None``."""
    return "—" if x is None else format(x, spec)


def machine_md(info: dict[str, Any]) -> str:
    """A one-paragraph machine description for the Markdown report."""
    v = info["versions"]
    return (
        f"Machine: {info['cpu_model']}, {info['logical_cores']} logical cores, {info['ram_gib']} GiB RAM, "
        f"torch threads {info['torch_threads']}; torch {v['torch']}, torchmetrics {v['torchmetrics']}, "
        f"MONAI {v['monai']}, numpy {v['numpy']}, softlabels {v['softlabels']}; git {info['git_commit']}; "
        f"{info['date_utc']}.\n"
    )


# --------------------------------------------------------------------------------------------- float64 reference
def float32_edges(n_bins: int = N_BINS) -> np.ndarray:
    """The bin edges of the contract: ``torch.linspace(0, 1, M + 1, dtype=float32)`` as a float32 array."""
    import torch

    return torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float32).numpy()


def bin_index(r: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value, lower-open upper-closed: ``e[m−1] < r ≤ e[m]``; ``r = 0`` → first bin.

    ``r`` and ``edges`` are compared in their own dtype (float32 against float32 edges).
    """
    return np.clip(np.searchsorted(edges, r, side="left") - 1, 0, len(edges) - 2)


def bin_index_exact(r: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """The same convention with the exact edges ``m / M``: ``max(ceil(r·M) − 1, 0)`` in float64."""
    return np.clip(np.ceil(r.astype(np.float64) * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


class RefHistogram:
    """Float64 histograms per row: ``count`` (int64), Σ confidence and Σ outcome (float64) for ``rows × n_bins``."""

    def __init__(self, rows: int, n_bins: int = N_BINS) -> None:
        self.n_bins = n_bins
        self.count = np.zeros((rows, n_bins), dtype=np.int64)
        self.conf = np.zeros((rows, n_bins), dtype=np.float64)
        self.outc = np.zeros((rows, n_bins), dtype=np.float64)

    def add(self, row: int, idx: np.ndarray, conf64: np.ndarray, outcome: np.ndarray) -> None:
        m = self.n_bins
        self.count[row] += np.bincount(idx, minlength=m)
        self.conf[row] += np.bincount(idx, weights=conf64, minlength=m)
        self.outc[row] += np.bincount(idx, weights=outcome.astype(np.float64), minlength=m)

    def ece_rows(self) -> np.ndarray:
        """ECE (l1) of each row, float64."""
        return np.abs(self.conf - self.outc).sum(1) / self.count.sum(1)

    def copy(self) -> RefHistogram:
        out = RefHistogram(self.count.shape[0], self.n_bins)
        out.count, out.conf, out.outc = self.count.copy(), self.conf.copy(), self.outc.copy()
        return out


def reference_update(
    probs: np.ndarray,
    labels: np.ndarray,
    hists: dict[str, tuple[RefHistogram, RefHistogram]],
    edges: np.ndarray,
) -> tuple[int, int]:
    """Add a chunk to the top-label (1 row) and classwise (C rows) float64 reference histograms.

    ``probs`` is ``(C, V)`` (class-major, the float32 values as given), ``labels`` ``(V,)`` int. ``hists`` maps
    ``"f32"`` (bins against the float32 ``edges``) and/or ``"exact"`` (bins against the exact ``m/M``) to a
    ``(top_label, classwise)`` pair. Returns how many top-label and classwise values the two bin rules put in
    different bins (0 unless both kinds are requested).
    """
    n_bins = next(iter(hists.values()))[0].n_bins
    binners = {"f32": lambda r: bin_index(r, edges), "exact": lambda r: bin_index_exact(r, n_bins)}
    pred = probs.argmax(0)  # first maximal class, like torch.max / argmax
    conf = probs.max(0)
    values = [(0, conf, pred == labels)] + [(c, probs[c], labels == c) for c in range(probs.shape[0])]
    mismatch = [0, 0]
    for k, (row, r, outcome) in enumerate(values):
        r64 = r.astype(np.float64)
        idx = {kind: binners[kind](r) for kind in hists}
        for kind, (top, cw) in hists.items():
            (top if k == 0 else cw).add(row, idx[kind], r64, outcome)
        if len(idx) == 2:
            mismatch[min(k, 1)] += int(np.count_nonzero(idx["f32"] != idx["exact"]))
    return mismatch[0], mismatch[1]


# --------------------------------------------------------------------------------------------- memory
def rss_bytes() -> int:
    """Current resident set size of this process."""
    import psutil

    return int(psutil.Process().memory_info().rss)


class PeakRSS:
    """Samples the RSS every ``interval`` s in a thread while ``active``; ``peak`` is the largest seen."""

    def __init__(self, interval: float = 0.002) -> None:
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self.active = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            if self.active:
                self.peak = max(self.peak, int(self._proc.memory_info().rss))
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.peak = max(self.peak, int(self._proc.memory_info().rss))
        self.active = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.active = False
        self.peak = max(self.peak, int(self._proc.memory_info().rss))

    def close(self) -> None:
        self._stop = True
        self._thread.join()


def max_rss_bytes() -> int:
    """``ru_maxrss`` of this process in bytes (Linux reports KiB)."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def state_bytes(tensors: Any) -> int:
    """Bytes held by a tensor, or a (nested) list/tuple/dict of tensors."""
    import torch

    if isinstance(tensors, torch.Tensor):
        return tensors.numel() * tensors.element_size()
    if isinstance(tensors, dict):
        return sum(state_bytes(t) for t in tensors.values())
    if isinstance(tensors, (list, tuple)):
        return sum(state_bytes(t) for t in tensors)
    return 0


def canary(a: Any, reps: int) -> float:
    """Seconds of ``reps`` fixed matmuls ``a @ a``: a gauge of how fast the (shared, virtual) CPU runs right now."""
    import torch

    t0 = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, a)
    return time.perf_counter() - t0


def rotated(names: list[str], r: int) -> list[str]:
    """``names`` rotated left by ``r`` (the order of round ``r`` of an interleaved benchmark)."""
    k = r % len(names)
    return names[k:] + names[:k]


def quartiles(values: list[float]) -> tuple[float, float]:
    """First and third quartiles (inclusive method; a single value is both)."""
    import statistics

    if len(values) < 2:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3
