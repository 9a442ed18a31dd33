"""The ``softlabels`` command line: an argparse front with one sub-command per job.

Sub-commands, each one entry of :data:`COMMANDS` (a function adding its arguments and a function running it):

- ``train --config cfg.yaml [--trainer.max_epochs 3 ...] [--resume]``: a configured run (``softlabels.training``;
  every key of the YAML can be overridden as ``--section.key value`` and is type-checked);
- ``evaluate --checkpoint C --output DIR [--split test] [--data-config data.yaml]``: metrics JSON, Markdown and
  reliability diagram of a checkpoint on a split of its data, or of any other data source;
- ``calibrate --checkpoint C [--output C2]``: temperature scaling fitted on the validation split, stored in a copy;
- ``predict --checkpoint C --output DIR [--input FOLDER | --split test] [--thresholds 0.1,...,0.9]``: probability
  maps (NIfTI with the input's affine) and thresholded masks;
- ``score``: evaluate existing predictions for calibration;
- ``conformal --output F.json (--checkpoint C [--split val] | --probs DIR --labels/--raters/--ref-probs DIR)
  [--alpha 0.1] [--loss fnr|fdr] [--procedure crc|ltt]``: thresholds with a risk guarantee (segmentation) or
  prediction sets (classification: ``--set-method lac|aps|raps``), as JSON for ``predict --conformal``;
- ``bench [--suite default] [--workers N] [--list | --run-index I | --report-only]``: the method benchmark and its
  report (``softlabels.bench``; finished runs are cached, so a killed benchmark resumes);
- ``nnunet convert --input DIR --output nnUNet_raw --dataset-id N --name NAME``: a generic or QUBIQ folder as an
  nnU-Net v2 raw dataset, rater maps encoded as bits, confidence as ordinal foreground levels (docs/nnunet.md);
  ``nnunet trainers-path``: the folder for ``nnUNet_extTrainer`` (softlabels' ``nnUNetTrainer`` subclasses).

User errors (bad paths, unreadable files, invalid values) print one line to stderr and exit with status 2, like
argparse's own errors; anything else is a bug and shows its traceback (:func:`softlabels._errors.is_user_error`: a
``ValueError`` or ``TypeError`` is a user error only when softlabels' own validation raised it, never when it escaped
from inside torch, numpy or a failed call in our own code).

``softlabels score`` file conventions (details in :mod:`softlabels.data.prediction_files`): probability maps are
NIfTI volumes with the classes on the **last** axis ``(x, y, z, C)`` (a 3D volume is the foreground probability of a
binary task) or nnU-Net ``--save_probabilities`` ``.npz`` files (key ``probabilities``, ``(C, z, y, x)``; the ``.pkl``
beside each gives the voxel grid and spacing; softlabels' region datasets are decoded, see
:mod:`softlabels.data.nnunet_files`); label maps are integer NIfTI or PNG files; cases are matched by file name stem.
Examples::

    softlabels score --probs preds/ --labels labelsTs/ --output report/
    softlabels score --probs preds/ --raters raters/ --output report/      # raters/<rater>/<case>.nii.gz
    softlabels score --probs nnunet_out/ --labels labelsTs/ --output report/  # nnUNetv2_predict --save_probabilities
    softlabels score --example --output outputs/example-score             # the example shipped with softlabels
    softlabels score --example --raters - --output outputs/example-raters  # the example against its 3 raters
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from softlabels import __version__
from softlabels._errors import is_user_error

USER_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError, OSError)
EXAMPLE = "-"  # ``--raters -`` / ``--labels -`` with ``--example``: that reference of the shipped example


class Command(NamedTuple):
    """A sub-command: its one-line help, a function adding its arguments and a function running it (→ exit code)."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _spacing(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        values = ()
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"must be positive numbers separated by commas, e.g. 1,1,2.5; got {text!r}")
    return values


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1; got {text!r}")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number; got {text!r}")
    return value


def _add_score_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data (cases matched by file name stem)")
    data.add_argument("--probs", type=Path, metavar="DIR", help="probability maps: NIfTI (x,y,z,C) or nnU-Net npz")
    ref = data.add_mutually_exclusive_group()
    ref.add_argument("--labels", type=Path, metavar="DIR", help="reference label maps (NIfTI or PNG, integer)")
    ref.add_argument("--raters", type=Path, metavar="DIR", help="one sub-folder of label maps per rater (soft ref.)")
    ref.add_argument("--ref-probs", type=Path, metavar="DIR", help="soft reference probability maps, as --probs")
    data.add_argument(
        "--example",
        action="store_true",
        help="score the example shipped with softlabels (reference: its labels; '--raters -': its 3 raters)",
    )
    options = parser.add_argument_group("options")
    options.add_argument("--output", type=Path, metavar="DIR", required=True, help="folder for the report files")
    options.add_argument("--n-bins", type=_positive_int, default=15, help="calibration bins (default 15)")
    options.add_argument(
        "--boundary-width", type=_positive_float, default=2.0, help="boundary band half-width in voxels (default 2)"
    )
    options.add_argument("--ignore-index", type=int, default=None, help="label to ignore (label-map references)")
    options.add_argument("--num-classes", type=_positive_int, default=None, help="classes C (default: first case)")
    options.add_argument(
        "--spacing", type=_spacing, default=None, metavar="X,Y[,Z]", help="HD95 voxel size (default: NIfTI or .pkl)"
    )
    options.add_argument(
        "--class-names",
        metavar="NAME,NAME,...",
        default=None,
        help="one name per class, background first (C == 1: background,foreground): per-class columns and keys "
        "(default: the class indices 1, 2, ...)",
    )
    options.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _score_inputs(args: argparse.Namespace) -> tuple[Path, Path, str]:
    """The prediction folder, reference folder and reference kind the arguments ask for."""
    given = [(kind, getattr(args, kind)) for kind in ("labels", "raters", "ref_probs") if getattr(args, kind)]
    if args.example:
        from softlabels.data.prediction_files import example_folder

        if args.probs is not None or any(str(path) != EXAMPLE for _, path in given):
            raise ValueError("--example scores the shipped example; give no --probs and no reference folder with it.")
        kind = given[0][0] if given else "labels"
        if kind == "ref_probs":
            raise ValueError("the shipped example has no soft probability reference; use '--raters -' or nothing.")
        root = example_folder()
        return root / "probs", root / kind, kind
    if args.probs is None or not given:
        raise ValueError("give --probs DIR and one reference: --labels DIR, --raters DIR or --ref-probs DIR.")
    if any(str(path) == EXAMPLE for _, path in given):
        raise ValueError("'-' as a reference folder means the shipped example's; use it with --example.")
    return args.probs, given[0][1], given[0][0]


def _run_score(args: argparse.Namespace) -> int:
    from softlabels.evaluation.report_files import check_report_folder, write_report
    from softlabels.evaluation.scoring import score_folders

    probs_dir, reference_dir, kind = _score_inputs(args)
    class_names = None if args.class_names is None else [name.strip() for name in args.class_names.split(",")]
    check_report_folder(args.output, what="--output")  # before any case is read: a refused folder costs nothing
    result = score_folders(
        probs_dir,
        reference_dir,
        kind=kind,  # type: ignore[arg-type]
        n_bins=args.n_bins,
        boundary_width=args.boundary_width,
        ignore_index=args.ignore_index,
        num_classes=args.num_classes,
        spacing=args.spacing,
        class_names=class_names,
        progress=False if args.no_progress else None,
    )
    sources = {"probs": str(probs_dir), kind: str(reference_dir), "example": bool(args.example)}
    paths = write_report(result, args.output, sources=sources)
    summary = result.summary
    print(
        f"scored {len(result.cases)} case(s): ECE {summary['ece']:.4f}, "
        f"Brier {summary['brier']:.4f}, NLL {summary['nll']:.4f}"
    )
    for path in paths.values():
        print(f"wrote {path}")
    return 0


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resume", action="store_true", help="continue from output_dir/checkpoints/last.ckpt")
    parser.add_argument(
        "--overwrite", action="store_true", help="train anew into an output_dir that holds an earlier run's checkpoints"
    )
    parser.set_defaults(options=[])  # --config FILE and --section.key value overrides: parsed by the run parser


def _run_train(args: argparse.Namespace) -> int:
    from softlabels.training.config import config_from_dict, config_parser, read_config_file
    from softlabels.training.run import train

    parser = config_parser("softlabels train", "Train a configured run (see docs/training.md).")
    if any(a in ("-h", "--help") for a in args.options):
        parser.print_help()
        return 0
    for path in _config_files(args.options):
        read_config_file(path)  # strict YAML first: no duplicated section, not empty
    try:
        namespace = parser.parse_args(args.options)
    except Exception as err:  # jsonargparse's ArgumentError: a bad key, type or value
        raise ValueError(str(err).strip()) from err
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        metrics = train(config_from_dict(namespace.as_dict()), resume=args.resume, overwrite=args.overwrite)
    except MisconfigurationException as err:  # Lightning's check of the trainer options (devices, accelerator)
        raise ValueError(f"trainer options: {err}") from err
    print("final validation metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())))
    return 0


def _config_files(options: Sequence[str]) -> list[str]:
    """The files given as ``--config FILE`` or ``--config=FILE`` among the train options."""
    files = [a.split("=", 1)[1] for a in options if a.startswith("--config=")]
    files += [options[i + 1] for i, a in enumerate(options[:-1]) if a == "--config"]
    return files


def _add_checkpoint_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, metavar="FILE", help="a checkpoint of `train`")


def _add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    _add_checkpoint_argument(parser)
    parser.add_argument("--output", type=Path, required=True, metavar="DIR", help="folder for the report files")
    parser.add_argument(
        "--split", default=None, choices=("train", "val", "test"),
        help="the split (default: the run's test split; with --data-config every case of that data)",
    )  # fmt: skip
    parser.add_argument(
        "--data-config", type=Path, metavar="FILE",
        help="a YAML with a `data:` section to evaluate other data (a folder: its raw images through the run's "
        "stored preprocessing, scored on their own grid)",
    )  # fmt: skip


def _data_override(path: Path | None) -> dict[str, object] | None:
    if path is None:
        return None
    from softlabels._yaml import load_yaml

    loaded = load_yaml(path, what="--data-config")
    if not isinstance(loaded, dict) or "data" not in loaded:
        raise ValueError(f"--data-config {str(path)!r} must hold a `data:` section; got {loaded!r:.80}.")
    return {"data": loaded["data"]}


def _run_evaluate(args: argparse.Namespace) -> int:
    from softlabels.training.inference import evaluate

    paths = evaluate(args.checkpoint, args.output, split=args.split, overrides=_data_override(args.data_config))
    print(f"report: {paths['markdown']}")
    return 0


def _add_calibrate_arguments(parser: argparse.ArgumentParser) -> None:
    _add_checkpoint_argument(parser)
    parser.add_argument("--output", type=Path, metavar="FILE", help="the calibrated checkpoint (default beside input)")


def _run_calibrate(args: argparse.Namespace) -> int:
    from softlabels.training.inference import calibrate

    summary = calibrate(args.checkpoint, args.output)
    print(
        f"temperature {summary['temperature']:.4g} (validation NLL {summary['nll_before']:.4g} -> "
        f"{summary['nll_after']:.4g}); calibrated checkpoint: {summary['checkpoint']}"
    )
    return 0


def _thresholds(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be numbers separated by commas, e.g. 0.1,0.5,0.9; got {text!r}"
        ) from None


def _add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    _add_checkpoint_argument(parser)
    parser.add_argument("--output", type=Path, required=True, metavar="DIR", help="folder for the predictions")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--input", type=Path, metavar="DIR", help="a folder with images/ (generic layout)")
    source.add_argument("--split", default="test", choices=("train", "val", "test"), help="a split of the run's data")
    parser.add_argument(
        "--thresholds", type=_thresholds, default=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), metavar="LIST",
        help="mask levels (default the QUBIQ levels 0.1,...,0.9)",
    )  # fmt: skip
    parser.add_argument(
        "--conformal", type=Path, metavar="FILE", help="thresholds or sets of `softlabels conformal` to apply too"
    )


def _run_predict(args: argparse.Namespace) -> int:
    from softlabels.training.prediction import predict

    manifest = predict(
        args.checkpoint, args.output, input_root=args.input, split=args.split, thresholds=args.thresholds,
        conformal=args.conformal,
    )  # fmt: skip
    print(f"wrote {len(manifest['files'])} files into {args.output}")
    return 0


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1); got {text!r}")
    return value


def _add_conformal_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("calibration cases: a run's split, or prediction folders (as for `score`)")
    source.add_argument("--checkpoint", type=Path, metavar="FILE", help="a checkpoint of `train`")
    source.add_argument("--split", default="val", choices=("train", "val", "test"), help="its split (default val)")
    source.add_argument("--probs", type=Path, metavar="DIR", help="probability maps (NIfTI (x,y,z,C) or npz)")
    ref = source.add_mutually_exclusive_group()
    ref.add_argument("--labels", type=Path, metavar="DIR", help="reference label maps")
    ref.add_argument("--raters", type=Path, metavar="DIR", help="one sub-folder of label maps per rater")
    ref.add_argument("--ref-probs", type=Path, metavar="DIR", help="soft reference probability maps")
    source.add_argument("--example", action="store_true", help="the example shipped with softlabels (its raters)")
    guarantee = parser.add_argument_group("the guarantee (docs/conformal.md)")
    guarantee.add_argument("--output", type=Path, required=True, metavar="FILE", help="the JSON file to write")
    guarantee.add_argument("--alpha", type=_probability, default=0.1, help="risk level / miscoverage (default 0.1)")
    guarantee.add_argument("--loss", default="fnr", choices=("fnr", "fdr"), help="segmentation risk (default fnr)")
    guarantee.add_argument(
        "--procedure", default="crc", choices=("crc", "ltt"),
        help="crc: E[risk] <= alpha; ltt: P(risk <= alpha) >= 1 - delta (default crc; fdr needs ltt or its bound)",
    )  # fmt: skip
    guarantee.add_argument("--delta", type=_probability, default=0.1, help="LTT's tolerance (default 0.1)")
    guarantee.add_argument(
        "--reference", default="auto", choices=("auto", "label", "each", "union", "majority", "soft"),
        help="the truth with raters or soft references (default auto: each rater, else soft, else the label)",
    )  # fmt: skip
    guarantee.add_argument("--num-levels", type=_positive_int, default=1001, help="threshold grid (default 1001)")
    guarantee.add_argument("--class-names", metavar="LIST", help="comma-separated class names (0: background)")
    sets = parser.add_argument_group("classification: prediction sets")
    sets.add_argument("--set-method", default="aps", choices=("lac", "aps", "raps"), help="(default aps)")
    sets.add_argument("--mondrian", action="store_true", help="class-conditional coverage (one quantile per class)")
    sets.add_argument("--randomized", action="store_true", help="randomised APS/RAPS (exact coverage)")
    sets.add_argument("--k-reg", type=int, default=1, help="RAPS: ranks without penalty (default 1)")
    sets.add_argument("--lambda-reg", type=float, default=0.01, help="RAPS: penalty per rank beyond k-reg")


def _run_conformal(args: argparse.Namespace) -> int:
    from softlabels._io import check_output_file
    from softlabels.conformal import ConformalSets, write_conformal

    check_output_file(args.output, what="--output")
    folders = args.probs is not None or args.example or any((args.labels, args.raters, args.ref_probs))
    if (args.checkpoint is None) == (not folders):
        raise ValueError("give either --checkpoint FILE or prediction folders (--probs DIR and a reference).")
    options = {"alpha": args.alpha, "loss": args.loss, "procedure": args.procedure, "delta": args.delta,
               "reference": args.reference, "num_levels": args.num_levels}  # fmt: skip
    if args.checkpoint is not None:
        from softlabels.training.conformal_run import fit_conformal

        sets = {"method": args.set_method, "mondrian": args.mondrian, "randomized": args.randomized}
        if args.set_method == "raps":
            sets |= {"k_reg": args.k_reg, "lambda_reg": args.lambda_reg}
        fitted, provenance = fit_conformal(args.checkpoint, split=args.split, sets=sets, **options)
    else:
        from softlabels.evaluation.conformal_fitting import fit_thresholds_from_folders

        if args.example and args.raters is None:
            args.raters = Path(EXAMPLE)
        probs_dir, reference_dir, kind = _score_inputs(args)
        names = None if args.class_names is None else [n.strip() for n in args.class_names.split(",")]
        fitted = fit_thresholds_from_folders(probs_dir, reference_dir, kind=kind, class_names=names, **options)  # type: ignore[arg-type]
        provenance = {"probs": str(probs_dir), kind: str(reference_dir)}
    write_conformal(args.output, fitted, provenance=provenance)
    if isinstance(fitted, ConformalSets):
        what = f"{fitted.method} sets, quantile(s) {', '.join(f'{q:.4f}' for q in fitted.quantiles)}"
    else:
        pairs = zip(fitted.structures, fitted.thresholds, strict=True)
        what = f"{fitted.procedure} thresholds {', '.join(f'{name}: {t:.3f}' for name, t in pairs)}"
    print(f"wrote {args.output}: {what} ({fitted.n_calibration} calibration cases)")
    return 0


def _add_nnunet_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="nnunet_command", required=True, metavar="SUBCOMMAND")
    convert = sub.add_parser(
        "convert", help="a generic or QUBIQ folder → nnU-Net v2 raw format (soft labels encoded in the label maps)",
        description="Write an nnU-Net v2 raw dataset (imagesTr/, labelsTr/, dataset.json) from a softlabels folder; "
        "rater maps become bit codes, confidence ordinal foreground levels (docs/nnunet.md).", allow_abbrev=False,
    )  # fmt: skip
    convert.add_argument("--input", type=Path, required=True, metavar="DIR", help="the folder (generic or QUBIQ)")
    convert.add_argument("--output", type=Path, required=True, metavar="DIR", help="nnUNet_raw (holds the dataset)")
    convert.add_argument("--dataset-id", type=_positive_int, required=True, help="nnU-Net's dataset number (1-999)")
    convert.add_argument("--name", required=True, help="dataset name: Dataset<ID>_<name>")
    convert.add_argument("--layout", default="generic", choices=("generic", "qubiq"), help="(default generic)")
    convert.add_argument("--task", type=_positive_int, default=1, help="QUBIQ task number (default 1)")
    convert.add_argument(
        "--source", default="auto", choices=("auto", "raters", "confidence", "labels"),
        help="what to encode (default auto: raters, else confidence, else labels)",
    )  # fmt: skip
    convert.add_argument("--levels", type=_positive_int, default=10, help="confidence levels L (default 10)")
    convert.add_argument(
        "--channel-names", metavar="LIST",
        help="comma-separated image channel names for dataset.json (e.g. CT: nnU-Net's CT normalisation)",
    )  # fmt: skip
    convert.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    path = sub.add_parser(
        "trainers-path", help="print the folder for nnU-Net's nnUNet_extTrainer variable (softlabels' trainers)",
        description="Print the folder that holds softlabels' nnU-Net trainers: export nnUNet_extTrainer=$(softlabels "
        "nnunet trainers-path), then nnUNetv2_train D 2d 0 -tr nnUNetTrainerSVLS (docs/nnunet.md).",
        allow_abbrev=False,
    )  # fmt: skip
    path.add_argument("--list", action="store_true", help="also list the trainers and their methods (to stderr)")


def _run_nnunet(args: argparse.Namespace) -> int:
    from softlabels.integrations.nnunet import convert_to_nnunet, trainers_folder

    if args.nnunet_command == "trainers-path":
        folder = trainers_folder()
        if args.list:
            from softlabels.integrations.nnunet.trainers import TRAINERS

            for name, trainer in sorted(TRAINERS.items()):
                print(f"{name}: {trainer.method_name} {trainer.method_params or ''}".rstrip(), file=sys.stderr)
        print(folder)
        return 0
    summary = convert_to_nnunet(
        args.input, args.output, dataset_id=args.dataset_id, name=args.name, layout=args.layout, task=args.task,
        source=args.source, levels=args.levels, overwrite=args.overwrite,
        channel_names=None if args.channel_names is None else [n.strip() for n in args.channel_names.split(",")],
    )  # fmt: skip
    encoding = summary["encoding"]
    print(f"wrote {summary['folder']} ({len(summary['cases'])} cases; {encoding['kind']} from {encoding['source']})")
    return 0


def _add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", default="default", help="the benchmark: quick, default or full (default: default)")
    parser.add_argument("--output", type=Path, default=None, metavar="DIR", help="default: outputs/bench-<suite>")
    parser.add_argument("--workers", type=_positive_int, default=1, help="local worker processes (default 1)")
    parser.add_argument("--only", nargs="+", metavar="SUITE", help="run only these suites of the benchmark")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--list", action="store_true", help="print the runs (index, id, finished?) and exit")
    mode.add_argument("--run-index", type=int, metavar="I", help="run only run I of --list (one job of an array)")
    mode.add_argument("--report-only", action="store_true", help="write the report from the finished runs")


def _run_bench(args: argparse.Namespace) -> int:
    from softlabels.bench.benchmark_run import load_result
    from softlabels.bench.grid_runner import BenchmarkFailed, run_benchmark, run_one
    from softlabels.bench.suites import get_benchmark, plan_runs

    suites = [s for s in get_benchmark(args.suite) if args.only is None or s.name in args.only]
    if args.only and len(suites) != len(set(args.only)):
        known = [s.name for s in get_benchmark(args.suite)]
        raise ValueError(f"--only names unknown suite(s) {sorted(set(args.only) - set(known))}; known: {known}.")
    output = args.output or Path("outputs") / f"bench-{args.suite}"
    specs = plan_runs(suites)
    if args.list:
        for i, spec in enumerate(specs):
            print(f"{i}\t{spec.run_id}\t{'finished' if load_result(output, spec) else 'pending'}")
        return 0
    if args.run_index is not None:
        if not 0 <= args.run_index < len(specs):
            raise ValueError(f"--run-index must be in [0, {len(specs) - 1}] (see --list); got {args.run_index}.")
        run_one(specs[args.run_index], output, prefix=f"[bench run {args.run_index}] {specs[args.run_index].run_id}")
        return 0
    if args.report_only:
        from softlabels.bench.benchmark_report import write_benchmark_report

        paths = write_benchmark_report(suites, output)
    else:
        try:
            paths = run_benchmark(suites, output, workers=args.workers)["report"]
        except BenchmarkFailed as err:
            print(f"softlabels bench: error: {err}", file=sys.stderr)
            return 1
    print(f"report: {paths['html']} (and {paths['markdown']})")
    return 0


COMMANDS: dict[str, Command] = {
    "train": Command(
        "train a configured run (YAML config + --section.key overrides)", _add_train_arguments, _run_train
    ),
    "evaluate": Command(
        "metrics report of a checkpoint on a split or other data", _add_evaluate_arguments, _run_evaluate
    ),
    "calibrate": Command("fit temperature scaling on the validation split", _add_calibrate_arguments, _run_calibrate),
    "predict": Command("probability maps and thresholded masks of a checkpoint", _add_predict_arguments, _run_predict),
    "conformal": Command(
        "thresholds or prediction sets with a guarantee, fitted on calibration cases (JSON for predict)",
        _add_conformal_arguments,
        _run_conformal,
    ),
    "score": Command(
        "evaluate existing predictions (e.g. nnU-Net's) for calibration, case by case",
        _add_score_arguments,
        _run_score,
    ),
    "bench": Command("compare the methods on the embedded data and write the report", _add_bench_arguments, _run_bench),
    "nnunet": Command("nnU-Net v2: convert datasets; the trainers' folder", _add_nnunet_arguments, _run_nnunet),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``softlabels`` parser with one sub-parser per entry of :data:`COMMANDS`.

    Example:
        >>> args = build_parser().parse_args(["score", "--example", "--output", "out"])
        >>> args.command, args.n_bins, args.example
        ('score', 15, True)
    """
    parser = argparse.ArgumentParser(
        prog="softlabels",
        description="Soft labels and exact, streaming calibration metrics for medical-image models.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub_parser = sub.add_parser(
            name, help=command.help, description=command.help, add_help=name != "train", allow_abbrev=False
        )
        command.add_arguments(sub_parser)
        sub_parser.set_defaults(run=command.run)
    return parser


def _one_line(err: BaseException) -> str:
    """The error's message on one line (a multi-line message from a library is joined)."""
    text = " ".join(part.strip() for part in str(err).strip().splitlines() if part.strip())
    return text or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 success, 2 user error).

    Args:
        argv: the arguments without the program name (``None``: ``sys.argv[1:]``).

    Returns:
        The exit status.

    Example:
        >>> main(["score", "--labels", "/nonexistent", "--probs", "/nonexistent", "--output", "out"])
        2
    """
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.options = rest
    if args.command == "train" and not rest:  # all defaults would train for minutes into ./outputs/run by accident
        parser.error("train needs --config FILE and/or --section.key overrides (configs/cpu/ holds examples)")
    try:
        return int(args.run(args))
    except USER_ERRORS as err:
        if not is_user_error(err):
            raise
        print(f"softlabels {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
