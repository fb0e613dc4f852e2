"""The `autopipe` command: one sub-command per stage, wired to the stage functions and nothing more.

Every problem a user can fix arrives as an AutopipeError and is printed as a message, never as a
traceback; an unexpected failure says so and points at `--debug`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from autopipe import __version__
from autopipe.errors import AutopipeError
from autopipe.files import scratch_folder
from autopipe.locks import output_lock
from autopipe.paths import Workspace, resolve_dataset
from autopipe.runtime import default_workers, set_threads

log = logging.getLogger("autopipe")
LOCKS = ".locks"  # one writer per output: plans/.locks/DATASET, preprocessed/.locks/DATASET, results/.locks/...

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
WRITERS = ("plan", "preprocess", "train", "predict", "evaluate")  # commands that write outputs of a cohort


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.quiet)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_USAGE
    set_threads(args.threads or max(1, default_workers() // max(1, args.workers)))
    # matplotlib's font cache and every temporary file go with autopipe's outputs, never into the user's home
    # folder or /tmp, where a killed command's would stay
    cache = workspace(args).results.resolve() / ".cache"
    os.environ.setdefault("MPLCONFIGDIR", str(cache / "matplotlib"))
    try:
        with scratch_folder(cache / "tmp") if args.command in WRITERS else contextlib.nullcontext():
            return args.run(args)
    except AutopipeError as exc:
        log.error("error: %s", exc)
        return EXIT_USAGE
    except KeyboardInterrupt:
        log.error("interrupted; finished outputs are kept, unfinished ones were not written")
        return 130
    except Exception as exc:
        if args.debug:
            raise
        log.error("autopipe failed unexpectedly: %s: %s\n  This is a bug in autopipe, not in your data. "
                  "Rerun with --debug to see where, and report it.", type(exc).__name__, exc)
        return EXIT_FAILED


def _configure_logging(quiet: bool) -> None:
    """Messages of every autopipe module go to stderr, plain, whatever else configured logging."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.setLevel(logging.WARNING if quiet else logging.INFO)
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)  # log files (training.log) keep everything, even with --quiet
    log.propagate = False


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("folders (default: under the current directory)")
    group.add_argument("--raw-dir", type=Path, help="cohorts (default ./raw_data or $AUTOPIPE_RAW)")
    group.add_argument("--plans-dir", type=Path, help="plans (default ./plans or $AUTOPIPE_PLANS)")
    group.add_argument("--preprocessed-dir", type=Path, help="default ./preprocessed or $AUTOPIPE_PREPROCESSED")
    group.add_argument("--results-dir", type=Path, help="default ./results or $AUTOPIPE_RESULTS")
    run = common.add_argument_group("running")
    run.add_argument("-j", "--workers", type=int, default=default_workers(),
                     help="worker processes for per-case work (default: all cores, %(default)s here)")
    run.add_argument("--threads", type=int,
                     help="threads for torch and ITK inside each process (default: cores / workers)")
    run.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    run.add_argument("--debug", action="store_true", help="show the traceback of unexpected failures")

    parser = argparse.ArgumentParser(
        prog="autopipe", description="Self-configuring pipeline for brain MRI with white-matter lesions.",
        epilog="Start with `autopipe demo`, or see README.md.")
    parser.add_argument("--version", action="version", version=f"autopipe {__version__}")
    parser.set_defaults(quiet=False, debug=False, threads=None, workers=default_workers())
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name, help_text, add_arguments, run_fn in COMMANDS:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(run=run_fn, command=name)
    return parser


def workspace(args: argparse.Namespace) -> Workspace:
    return Workspace.from_environment(raw=args.raw_dir, plans=args.plans_dir,
                                      preprocessed=args.preprocessed_dir, results=args.results_dir)


def checked_dataset(args: argparse.Namespace, ws: Workspace) -> Path:
    """The cohort the DATASET argument names, refused while `autopipe check` finds errors in it (the one gate)."""
    from autopipe.cohort.gate import cache_path, require_valid_cohort
    from autopipe.files import remove_stale_temporaries

    root = resolve_dataset(args.dataset, ws.raw)
    cache = cache_path(ws.plans, root.name)
    for folder in (cache.parent, ws.plans_dir(root.name), ws.preprocessed / root.name, ws.results / root.name):
        remove_stale_temporaries(folder)  # what a killed command left
    require_valid_cohort(root, cache, workers=args.workers, progress=not args.quiet)
    return root


def dataset_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", nargs="?", metavar="DATASET",
                   help="cohort folder name (Dataset001_SynthPVL), number (1), name (SynthPVL) or path; "
                        "optional when raw_data holds one cohort")


# --- synth -------------------------------------------------------------------------------------------

def _synth_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", type=Path, help="cohort folder to create, e.g. raw_data/Dataset001_SynthPVL")
    p.add_argument("--cases", type=int, default=20, help="number of training cases (default %(default)s)")
    p.add_argument("--test-cases", type=int, default=0, help="extra unlabeled cases in imagesTs")
    p.add_argument("--seed", type=int, default=0, help="the cohort is identical for the same seed")
    p.add_argument("--spacing", type=_spacing, default=(1.0, 1.0, 1.0),
                   help="mm: one value (1, 1.5, 2) or three (0.9,0.9,3); default 1")
    p.add_argument("--orientation", default="RAS", help="axis codes of the written arrays, e.g. RAS or LPS")
    p.add_argument("--channels", default="FLAIR", help="FLAIR or FLAIR,T1")
    p.add_argument("--coils", type=int, default=8, help="receive coils in the k-space files")
    p.add_argument("--acceleration", type=float, default=7.5, help="undersampling factor of the k-space mask")
    p.add_argument("--mask", default="poisson", choices=("poisson", "gaussian", "equispaced", "random"),
                   help="sampling mask: 2D poisson disc (default), 2D gaussian, 1D equispaced or random lines")
    p.add_argument("--kspace-slices", type=int, default=12, help="slices per k-space file")
    p.add_argument("--tasks", default="segmentation,reconstruction,hand_function",
                   help="which tasks' data to write (comma-separated)")
    p.add_argument("--force", action="store_true", help="replace an existing synthetic cohort at OUT")


def _spacing(text: str) -> tuple[float, float, float]:
    try:
        values = [float(v) for v in text.replace("x", ",").split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"'{text}' is not a spacing like 1, 2 or 0.9,0.9,3") from exc
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"'{text}': give one or three positive numbers (mm)")
    return tuple(values)  # type: ignore[return-value]


def _run_synth(args: argparse.Namespace) -> int:
    from autopipe.synth.cohort import SynthOptions
    from autopipe.synth.output import synthesize_atomically

    options = SynthOptions(
        num_cases=args.cases, num_test_cases=args.test_cases, seed=args.seed, spacing=args.spacing,
        orientation=args.orientation.upper(), channels=tuple(c.strip() for c in args.channels.split(",")),
        coils=args.coils, acceleration=args.acceleration, mask_type=args.mask, kspace_slices=args.kspace_slices,
        tasks=tuple(t.strip() for t in args.tasks.split(",")))
    summary = synthesize_atomically(args.out, options, workers=args.workers, force=args.force,
                                    progress=not args.quiet)
    log.info("wrote %s", args.out)
    for key, value in summary.items():
        log.info("  %-28s %s", key, value)
    return EXIT_OK


# --- check -------------------------------------------------------------------------------------------

def _check_arguments(p: argparse.ArgumentParser) -> None:
    dataset_argument(p)


def _run_check(args: argparse.Namespace) -> int:
    from autopipe.cohort.check import check_cohort, format_problem

    root = resolve_dataset(args.dataset, workspace(args).raw)
    problems = check_cohort(root, workers=args.workers, progress=not args.quiet)
    errors = [p for p in problems if p.severity == "error"]
    for problem in problems:
        print(format_problem(problem))
    print(f"{root.name}: {len(errors)} error(s), {len(problems) - len(errors)} warning(s)"
          + ("" if errors else " - the cohort is ready for `autopipe plan`"))
    return EXIT_FAILED if errors else EXIT_OK


# --- plan --------------------------------------------------------------------------------------------

def _plan_arguments(p: argparse.ArgumentParser) -> None:
    dataset_argument(p)
    p.add_argument("--device", choices=("cpu", "cuda", "mps"), help="hardware training will run on "
                   "(default: detected)")
    p.add_argument("--memory-gb", type=float, help="memory of that device (default: detected)")
    p.add_argument("--hours", type=float, help="training time per configuration and fold "
                   "(default: 1 on a CPU; nnU-Net's full schedule on a GPU)")
    p.add_argument("--throughput-gflops", type=float,
                   help="training speed of the device (default: measured in about a second); give it to make "
                        "plans independent of the machine's momentary load")


def _run_plan(args: argparse.Namespace) -> int:
    from autopipe.plan.planner import plan_dataset

    ws = workspace(args)
    root = checked_dataset(args, ws)
    with output_lock(ws.plans / LOCKS / root.name, "plan"):
        result = plan_dataset(root, ws, device=args.device, memory_gb=args.memory_gb, hours=args.hours,
                              workers=args.workers, progress=not args.quiet, throughput_gflops=args.throughput_gflops)
    print(result["summary"])
    return EXIT_OK


# --- preprocess --------------------------------------------------------------------------------------

def _preprocess_arguments(p: argparse.ArgumentParser) -> None:
    dataset_argument(p)
    p.add_argument("--force", action="store_true", help="redo cases that are already preprocessed")
    p.add_argument("--no-qc", dest="qc", action="store_false", help="skip the QC pictures (faster)")
    p.add_argument("--accept", nargs="+", metavar="CASE",
                   help="accept the failed plausibility checks of these cases (or `all`) after looking at their QC "
                        "pictures; recorded in accepted.json, and `autopipe train` then uses them")


def _run_preprocess(args: argparse.Namespace) -> int:
    from autopipe.preprocess.runner import preprocess_dataset

    ws = workspace(args)
    root = checked_dataset(args, ws)
    with output_lock(ws.preprocessed / LOCKS / root.name, "preprocess"):
        result = preprocess_dataset(root, ws, workers=args.workers, force=args.force, progress=not args.quiet,
                                    qc=args.qc, accept=args.accept)
    print(result["table"])
    folder = result["folder"]
    print(f"{result['processed']} case(s) preprocessed, {result['skipped']} already done, "
          f"{len(result['failed'])} failed -> {folder}")
    if args.qc and result["report"]["cases"]:
        print(f"QC: {folder / 'qc' / 'montage.png'} (one picture per case beside it); report: "
              f"{folder / 'report.json'}")
    if args.debug:
        for case, details in result["tracebacks"].items():
            log.error("traceback of %s:\n%s", case, details)
    if result["accepted_now"]:
        print(f"accepted the failed checks of {', '.join(result['accepted_now'])} (recorded in "
              f"{folder / 'accepted.json'})")
    for case, checks in result["implausible"].items():
        for message in checks.values():
            log.error("%s: %s", case, message)
    if result["implausible"]:
        log.error("error: %d case(s) failed a plausibility check (above). Fix the cause and rerun, or, after looking "
                  "at their QC pictures, accept them: %s", len(result["implausible"]),
                  " ".join(filter(None, ["autopipe preprocess", args.dataset, "--accept", *result["implausible"]])))
    if result["failed"]:
        log.error("error: %d case(s) failed (reasons above); fix them and rerun: finished cases are kept",
                  len(result["failed"]))
    return EXIT_FAILED if result["failed"] or result["implausible"] else EXIT_OK


# --- train -------------------------------------------------------------------------------------------

def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("fold", metavar="FOLD", help="cross-validation fold 0-4, or all (every case, no validation)")
    dataset_argument(p)
    p.add_argument("-c", "--configurations", help="comma-separated, e.g. 3d_fullres (default: every planned one)")
    p.add_argument("--epochs", type=int, help="override the plan's number of epochs")
    p.add_argument("--iterations", type=int, help="override the plan's iterations per epoch")
    p.add_argument("--continue", dest="resume", action="store_true",
                   help="resume an interrupted run from its last finished epoch")
    p.add_argument("--force", action="store_true", help="train again from scratch, replacing earlier results")
    p.add_argument("--device", choices=("cuda", "mps", "cpu"), help="default: the best one present")
    p.add_argument("--loader-workers", type=int, help="processes preparing batches (default: by device and cores)")
    p.add_argument("--seed", type=int, default=12345, help="same seed, same data, same result on a CPU")
    p.add_argument("--optimizer", choices=("sgd", "adam"), help="override the plan's optimizer (with its usual lr)")
    p.add_argument("--no-validation", dest="validate", action="store_false",
                   help="skip predicting and evaluating the held-out cases after training")
    p.add_argument("--no-mirror", dest="mirror", action="store_false",
                   help="validate without mirror test-time augmentation (8x faster in 3D)")


def _run_train(args: argparse.Namespace) -> int:
    import torch  # noqa: F401  (imported before set_threads, so torch's thread count is set too)

    from autopipe import distributed
    from autopipe.preprocess.folds import load_fold, parse_fold
    from autopipe.train.device import choose_device
    from autopipe.train.fold import train_fold, training_jobs
    from autopipe.train.trainer import default_loader_workers

    fold_name = parse_fold(args.fold)
    ws = workspace(args)
    root = checked_dataset(args, ws)
    ranks = distributed.ranks_from_environment()
    device = choose_device(args.device, ranks.local_rank)
    cores = max(1, default_workers() // distributed.local_world_size())
    set_threads(args.threads or cores)
    distributed.start(ranks, device.type)
    if not ranks.is_main:  # one voice: rank 0 reports, the others only warn
        log.setLevel(logging.WARNING)
    # one training of a fold at a time; not under torchrun, where a refused rank 0 would leave the others waiting
    lock = output_lock(ws.results / LOCKS / root.name / f"fold_{fold_name}", f"train {fold_name}") \
        if ranks.world_size == 1 else contextlib.nullcontext()
    try:
        with lock:
            fold = load_fold(root, ws, fold_name)
            names = [c.strip() for c in args.configurations.split(",")] if args.configurations else None
            configurations, slice_models, hand_models = split_model_names(fold, names)
            workers = default_loader_workers(device.type, cores) if args.loader_workers is None \
                else args.loader_workers
            jobs = training_jobs(fold, ws, configurations, epochs=args.epochs, iterations=args.iterations,
                                 loader_workers=workers, seed=args.seed, optimizer=args.optimizer) \
                if configurations != [] else []
            train_fold(jobs, device, ranks, resume=args.resume, force=args.force, progress=not args.quiet)
            _validate_segmentation(args, fold, jobs, device, ranks)
            _train_hand_function(args, fold, root, ws, hand_models, device, ranks, workers)
            _train_reconstruction(args, fold, ws, slice_models, device, ranks)
            return EXIT_OK
    finally:
        distributed.stop()


HAND_FUNCTION = "hand_function"


def split_model_names(fold, names: list[str] | None) -> tuple[list[str] | None, list[str] | None, list[str] | None]:
    """-c NAMES -> (segmentation configurations, reconstruction models incl. 'cs', hand-function models:
    'hand_function' for the logistic regression and the joint U-Net's name); None means every planned."""
    from autopipe.layout import CS
    from autopipe.models.slice_models import planned_models
    from autopipe.train.joint_fold import planned_joint_name

    if names is None:
        return None, None, None
    slice_names = [*planned_models(fold.plans), *([CS] if fold.plans.reconstruction else [])]
    plans = fold.plans
    joint = planned_joint_name(plans)
    hand_names = [*([HAND_FUNCTION] if plans.hand_function else []), *([joint] if joint else [])]
    unknown = [n for n in names if n not in plans.configurations and n not in slice_names and n not in hand_names]
    if unknown:
        raise AutopipeError(f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not in the plan",
                            fix=f"choose from {', '.join([*plans.configurations, *slice_names, *hand_names])}")
    return ([n for n in names if n in plans.configurations], [n for n in names if n in slice_names],
            [n for n in names if n in hand_names])


def _train_reconstruction(args: argparse.Namespace, fold, ws, models: list[str] | None, device, ranks) -> None:
    """The compressed-sensing weight and the slice models of the plan's approaches, then their comparison."""
    from autopipe import distributed
    from autopipe.evaluate.approach_comparison import compare_fold, format_comparison, summarize
    from autopipe.layout import CS
    from autopipe.train.slice_fold import slice_jobs, train_slice_fold, tune_cs_weight

    if fold.plans.reconstruction is None or models == []:
        return
    if ranks.is_main and (models is None or CS in models):
        tune_cs_weight(fold, ws, force=args.force, progress=not args.quiet)
    distributed.barrier()
    jobs = slice_jobs(fold, ws, None if models is None else [m for m in models if m != CS], epochs=args.epochs,
                      seed=args.seed)
    train_slice_fold(jobs, device, ranks, resume=args.resume, force=args.force, progress=not args.quiet)
    if args.validate and fold.val_cases and ranks.is_main:
        result = compare_fold(fold, ws, device, progress=not args.quiet)
        print(f"\nreconstruction + segmentation, fold {fold.name}: {len(result['cases'])} held-out case(s)")
        print(format_comparison(summarize([result])))


def _train_hand_function(args: argparse.Namespace, fold, root: Path, ws, models: list[str] | None, device,
                         ranks, workers: int) -> None:
    """The joint segmentation + hand-function U-Net of this fold, then the logistic regressions of every fold
    whose out-of-fold segmentations are now complete."""
    from autopipe.train.hand_fold import train_ready_predictors
    from autopipe.train.joint_fold import planned_joint_name

    plans = fold.plans
    if plans.hand_function is None or fold.name == "all" or models == []:
        return
    if plans.joint and (models is None or planned_joint_name(plans) in models):
        _train_joint(args, fold, ws, plans.joint.hand_function_weight, device, ranks, workers)
    if ranks.is_main and (models is None or HAND_FUNCTION in models):
        from autopipe.plan.splits import load_splits

        folds = [str(i) for i in range(len(load_splits(ws.plans_dir(fold.spec.name) / "splits_final.json")))]
        for predictor in train_ready_predictors(root, ws, folds, force=args.force, progress=not args.quiet):
            print(f"hand function fold {predictor['fold']}: logistic regression on {len(predictor['training_cases'])} "
                  f"subjects' lesion features -> {ws.results / fold.spec.name / 'hand_function'}")


def _train_joint(args: argparse.Namespace, fold, ws, r: float, device, ranks, workers: int) -> None:
    """Train (or finish) the joint U-Net with weight r, then score its held-out subjects' hand function."""
    from autopipe.predict.hand_inference import predict_joint_validation
    from autopipe.train.fold import train_fold
    from autopipe.train.hand_fold import labels_of
    from autopipe.train.joint_fold import joint_job

    labels = labels_of(fold)
    job = joint_job(fold, ws, {c: v for c, v in labels.items() if v is not None}, r,
                    fold.plans.joint.hand_function_weight, fold.plans.joint.configuration, epochs=args.epochs,
                    iterations=args.iterations, loader_workers=workers, seed=args.seed, optimizer=args.optimizer)
    train_fold([job], device, ranks, resume=args.resume, force=args.force, progress=not args.quiet)
    _validate_segmentation(args, fold, [job], device, ranks)
    if ranks.is_main and fold.val_cases:
        result = predict_joint_validation(job.out_dir, job.hand_weight, fold, labels, device,
                                          progress=not args.quiet)
        scored = [v for v in result["cases"].values() if v["label"] is not None]
        correct = sum((v["probability"] >= 0.5) == bool(v["label"]) for v in scored)
        print(f"{job.name} fold {fold.name}: hand function of {len(scored)} held-out subject(s), {correct} right at "
              f"p >= 0.5 (r = {r:g}); `autopipe evaluate` pools the folds")


def _validate_segmentation(args: argparse.Namespace, fold, jobs: list, device, ranks) -> None:
    """Predict and score the fold's held-out cases with every segmentation configuration just trained."""
    from autopipe.evaluate.crossval import evaluate_fold
    from autopipe.predict.validation import predict_validation

    if not (args.validate and fold.val_cases):
        return
    for job in jobs:
        folder = predict_validation(fold.spec, job.out_dir, fold.preprocessed, list(job.val_cases), device,
                                    ranks, mirror=args.mirror, progress=not args.quiet)
        if ranks.is_main:
            result = evaluate_fold(fold.spec, folder, list(job.val_cases), fold.plans.preprocessing.lesion_labels,
                                   progress=not args.quiet)
            print(f"\n{job.name} fold {fold.name}: validation of {len(job.val_cases)} held-out case(s) in their "
                  f"native space ({folder})")
            print(result["table"])


# --- predict -----------------------------------------------------------------------------------------

def _predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input", type=Path, required=True,
                   help="folder of new cases: CASE_0000.nii.gz, ... and/or k-space files CASE.h5")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="folder for CASE.nii.gz lesion masks (CASE_reconstruction/_lesions.nii.gz from k-space)")
    dataset_argument(p)
    p.add_argument("-c", "--configuration", help="default: the best by cross-validation, else 3d_fullres")
    p.add_argument("--folds", help="comma-separated folds to ensemble (default: every trained fold)")
    p.add_argument("--probabilities", action="store_true", help="also write CASE_probability.nii.gz")
    p.add_argument("--approach", choices=("pretrained", "sequential", "end_to_end", "joint", "mtlrs"),
                   help="for k-space files (CASE.h5): default the best per-lesion Dice of the comparison")
    p.add_argument("--no-mirror", dest="mirror", action="store_false",
                   help="without mirror test-time augmentation (8x faster in 3D, slightly less accurate)")
    p.add_argument("--device", choices=("cuda", "mps", "cpu"), help="default: the best one present")
    p.add_argument("--accept-implausible", action="store_true",
                   help="predict cases whose preprocessing failed a plausibility check (with a warning)")


def _run_predict(args: argparse.Namespace) -> int:
    from autopipe.files import remove_stale_temporaries

    ws = workspace(args)
    root = checked_dataset(args, ws)
    key = hashlib.sha256(str(args.output.expanduser().resolve()).encode()).hexdigest()[:16]
    with output_lock(ws.results / LOCKS / "predict" / key, f"predict -o {args.output}"):
        remove_stale_temporaries(args.output)
        return _predict(args, ws, root)


def _predict(args: argparse.Namespace, ws: Workspace, root: Path) -> int:
    from autopipe.predict.new_cases import predict_folder
    from autopipe.train.device import choose_device

    folds = [f.strip() for f in args.folds.split(",")] if args.folds else None
    has_kspace = args.input.is_dir() and any(args.input.glob("*.h5"))
    has_images = args.input.is_dir() and any(args.input.glob("*_0000.*"))
    failed = []
    if has_images or not has_kspace:
        result = predict_folder(args.input, args.output, root, ws, configuration=args.configuration, folds=folds,
                                device=choose_device(args.device), mirror=args.mirror,
                                probabilities=args.probabilities, workers=args.workers, progress=not args.quiet,
                                accept_implausible=args.accept_implausible)
        masks = [p for p in result["written"] if "probability" not in p.name and p.suffix != ".csv"]
        print(f"{len(masks)} case(s) predicted with {result['configuration']} (folds {', '.join(result['folds'])}) "
              f"-> {args.output}")
        if result["hand_function"]:
            print(f"hand function, probability of impairment (mean of the folds' logistic regressions) -> "
                  f"{args.output / 'hand_function.csv'}")
            for case, p in sorted(result["hand_function"].items()):
                print(f"   {case}: {p:.2f} ({'impaired' if p >= 0.5 else 'good'})")
        failed += result["failed"]
    if has_kspace:
        from autopipe.cohort.dataset import load_dataset
        from autopipe.plan.plans_file import load_plans
        from autopipe.predict.kspace_cases import predict_kspace_folder

        plans = load_plans(ws.plans_dir(load_dataset(root).name) / "plans.json")
        result = predict_kspace_folder(args.input, args.output, plans, ws, approach=args.approach, folds=folds,
                                       device=choose_device(args.device), progress=not args.quiet)
        print(f"{len(result['written']) // 2} k-space file(s) reconstructed and segmented with {result['approach']} "
              f"(folds {', '.join(result['folds'])}) -> {args.output}")
        failed += result["failed"]
    if failed:
        log.error("error: %d case(s) failed (reasons above)", len(failed))
        return EXIT_FAILED
    return EXIT_OK


# --- evaluate ----------------------------------------------------------------------------------------

def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    dataset_argument(p)
    p.add_argument("-c", "--configurations", help="comma-separated (default: every trained configuration)")
    p.add_argument("--predictions", type=Path, help="evaluate this folder of CASE.nii.gz masks instead ...")
    p.add_argument("--references", type=Path, help="... against this folder of reference label maps")
    p.add_argument("--lesion-labels", default="1", help="reference labels counted as lesion (default %(default)s)")
    p.add_argument("--folds", help="comma-separated folds for the reconstruction comparison (default: every "
                                   "trained fold)")


def _run_evaluate(args: argparse.Namespace) -> int:
    from autopipe.evaluate.crossval import evaluate_folders

    if (args.predictions is None) != (args.references is None):
        raise AutopipeError("--predictions and --references go together", fix="give both folders, or neither")
    if args.predictions is not None:
        labels = tuple(int(v) for v in args.lesion_labels.split(","))
        result = evaluate_folders(args.predictions, args.references, labels, progress=not args.quiet)
        print(result["table"])
        print(f"wrote {result['path']}")
        return EXIT_OK
    ws = workspace(args)
    root = checked_dataset(args, ws)
    with output_lock(ws.results / LOCKS / root.name / "evaluate", "evaluate"):
        return _evaluate_cohort(args, ws, root)


def _evaluate_cohort(args: argparse.Namespace, ws: Workspace, root: Path) -> int:
    from autopipe.evaluate.approach_comparison import compare_crossvalidation
    from autopipe.evaluate.crossval import evaluate_crossvalidation

    configurations = [c.strip() for c in args.configurations.split(",")] if args.configurations else None
    try:
        for summary in evaluate_crossvalidation(root, ws, configurations, progress=not args.quiet):
            print(summary["text"])
        segmentation_error = None
    except AutopipeError as exc:  # a cohort may have trained only the reconstruction models so far
        segmentation_error = exc
    folds = [f.strip() for f in args.folds.split(",")] if args.folds else None
    comparison = compare_crossvalidation(root, ws, folds=folds, progress=not args.quiet) \
        if configurations is None else None
    if comparison is not None:
        print(f"\nreconstruction + segmentation approaches\n{comparison['text']}\nwrote {comparison['path']}")
    hand = None
    if configurations is None:
        from autopipe.cohort.dataset import load_dataset
        from autopipe.evaluate.hand_function import evaluate_hand_function

        hand = evaluate_hand_function(root, ws, load_dataset(root).name)
        if hand is not None:
            print(f"\n{hand['text']}")
    if comparison is None and hand is None and segmentation_error is not None:
        raise segmentation_error
    return EXIT_OK


# --- demo --------------------------------------------------------------------------------------------

def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", type=Path, default=Path("autopipe_demo"),
                   help="folder for the demo's raw_data, plans, ... (default ./autopipe_demo)")
    p.add_argument("--cases", type=int, default=16, help="synthetic cases (default %(default)s)")
    p.add_argument("--minutes", type=float, default=6.0,
                   help="training time per configuration; the plan sizes the U-Nets to fit (default %(default)s)")


def _run_demo(args: argparse.Namespace) -> int:
    from autopipe.demo import run_demo

    return run_demo(args.workdir, cases=args.cases, workers=args.workers, hours=args.minutes / 60)


COMMANDS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = [
    ("demo", "the whole pipeline on a synthetic cohort: synth, check, plan, preprocess, train fold 0, predict",
     _demo_arguments,
     _run_demo),
    ("synth", "write a realistic synthetic cohort (FLAIR, lesions, k-space, hand function)", _synth_arguments,
     _run_synth),
    ("check", "validate a cohort: one line per problem, exit status 1 on errors", _check_arguments, _run_check),
    ("plan", "fingerprint a cohort and write plans/DATASET/{fingerprint,plans,splits_final}.json",
     _plan_arguments, _run_plan),
    ("preprocess", "skull strip, bias-correct, register and resample every case into preprocessed/DATASET/",
     _preprocess_arguments, _run_preprocess),
    ("train", "train the planned models on one cross-validation fold, then validate its held-out cases",
     _train_arguments, _run_train),
    ("predict", "segment new cases (CASE_0000.nii.gz ...) in their own space with the trained folds",
     _predict_arguments, _run_predict),
    ("evaluate", "Dice, VOE, HD95, lesion detection and volumes, per case and across folds", _evaluate_arguments,
     _run_evaluate),
]
