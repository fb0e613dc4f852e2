"""The `autopipe` command: parse the arguments, check the cohort, take the output lock, call the stage.

Every problem a user can fix arrives as an AutopipeError and is printed as a message, never as a
traceback; an unexpected failure says so and points at `--debug`. The options live in
autopipe.arguments, the commands that chain stages in autopipe.pipeline.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from autopipe import __version__, arguments
from autopipe.arguments import comma_list
from autopipe.dask_cluster import open_workers
from autopipe.errors import AutopipeError
from autopipe.files import remove_stale_temporaries, scratch_folder
from autopipe.locks import output_lock
from autopipe.paths import Workspace, resolve_dataset
from autopipe.runtime import configure_logging, default_workers, set_threads

log = logging.getLogger("autopipe")
LOCKS = ".locks"  # one writer per output: plans/.locks/DATASET, preprocessed/.locks/DATASET, results/.locks/...

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
WRITERS = ("plan", "preprocess", "train", "predict", "evaluate", "demo")  # commands that write outputs of a cohort


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.quiet)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_USAGE
    set_threads(args.threads or max(1, default_workers() // max(1, args.workers)))
    # matplotlib's font cache and every temporary file go with autopipe's outputs, never into the user's home
    # folder or /tmp, where a killed command's would stay
    cache = arguments.workspace(args).results.resolve() / ".cache"
    os.environ.setdefault("MPLCONFIGDIR", str(cache / "matplotlib"))
    try:
        with scratch_folder(cache / "tmp") if args.command in WRITERS else contextlib.nullcontext(), \
                open_workers(args.workers, getattr(args, "scheduler", None), getattr(args, "cluster", None)) \
                as workers:
            args.workers = workers  # local processes, or the Dask cluster every per-case stage submits to
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


def build_parser() -> argparse.ArgumentParser:
    common = arguments.common_options()
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


def checked_dataset(args: argparse.Namespace, ws: Workspace) -> Path:
    """The cohort the DATASET argument names, refused while `autopipe check` finds errors in it (the one gate)."""
    from autopipe.cohort.gate import cache_path, require_valid_cohort

    root = resolve_dataset(args.dataset, ws.raw)
    cache = cache_path(ws.plans, root.name)
    for folder in (cache.parent, ws.plans_dir(root.name), ws.preprocessed / root.name, ws.results / root.name):
        remove_stale_temporaries(folder)  # what a killed command left
    require_valid_cohort(root, cache, workers=args.workers, progress=not args.quiet)
    return root


def _run_synth(args: argparse.Namespace) -> int:
    from autopipe.synth.cohort import SynthOptions
    from autopipe.synth.output import synthesize_atomically

    options = SynthOptions(
        num_cases=args.cases, num_test_cases=args.test_cases, seed=args.seed, spacing=args.spacing,
        orientation=args.orientation.upper(), channels=tuple(comma_list(args.channels)),
        coils=args.coils, acceleration=args.acceleration, mask_type=args.mask, kspace_slices=args.kspace_slices,
        tasks=tuple(comma_list(args.tasks)), labels=args.labels)
    summary = synthesize_atomically(args.out, options, workers=args.workers, force=args.force,
                                    progress=not args.quiet)
    log.info("wrote %s", args.out)
    for key, value in summary.items():
        log.info("  %-28s %s", key, value)
    return EXIT_OK


def _run_check(args: argparse.Namespace) -> int:
    root = resolve_dataset(args.dataset, arguments.workspace(args).raw)
    return _print_check(root, args, root.name, " - the cohort is ready for `autopipe plan`")


def _print_check(root: Path, args: argparse.Namespace, title: str, when_clean: str = "") -> int:
    """`autopipe check`'s lines for the cohort at `root`, their tally under `title`, and its exit status."""
    from autopipe.cohort.check import check_cohort, format_problem

    problems = check_cohort(root, workers=args.workers, progress=not args.quiet)
    errors = [p for p in problems if p.severity == "error"]
    for problem in problems:
        print(format_problem(problem))
    print(f"{title}: {len(errors)} error(s), {len(problems) - len(errors)} warning(s)"
          + ("" if errors else when_clean))
    return EXIT_FAILED if errors else EXIT_OK


def _run_import(args: argparse.Namespace) -> int:
    """DICOM or BIDS into a new cohort (or a folder of images), then `autopipe check` on the cohort."""
    from autopipe.cohort.import_records import format_table
    from autopipe.cohort.importing import ImportOptions, run_import

    options = ImportOptions(kind=args.kind, images_only=args.images_only, rules=args.rules,
                            show_rules=args.show_rules, channels=tuple(comma_list(args.channels)),
                            hand_column=args.hand_column, lesion_desc=args.lesion_desc, progress=not args.quiet)
    destination = Path(args.destination)
    if not args.images_only and len(destination.parts) == 1:
        destination = arguments.workspace(args).raw / destination
    result = run_import(args.source, destination, options)
    if result is None:  # --show-rules
        return EXIT_OK
    for note in result.notes:  # e.g. the DICOM series -> channel table, for the user to confirm
        print(note)
    print(format_table(result))
    if args.images_only:
        return EXIT_OK
    return _print_check(result.destination, args, f"autopipe check {result.destination.name}")


def _run_plan(args: argparse.Namespace) -> int:
    from autopipe.plan.planner import plan_dataset

    ws = arguments.workspace(args)
    root = checked_dataset(args, ws)
    with output_lock(ws.plans / LOCKS / root.name, "plan"):
        result = plan_dataset(root, ws, device=args.device, memory_gb=args.memory_gb, hours=args.hours,
                              workers=args.workers, progress=not args.quiet, throughput_gflops=args.throughput_gflops,
                              recalibrate=args.recalibrate)
    print(result["summary"])
    return EXIT_OK


def _run_preprocess(args: argparse.Namespace) -> int:
    from autopipe.preprocess.runner import preprocess_dataset

    ws = arguments.workspace(args)
    root = checked_dataset(args, ws)
    with output_lock(ws.preprocessed / LOCKS / root.name, "preprocess"):
        result = preprocess_dataset(root, ws, workers=args.workers, force=args.force, progress=not args.quiet,
                                    qc=args.qc, accept=args.accept)
    if args.debug:
        for case, details in result.tracebacks.items():
            log.error("traceback of %s:\n%s", case, details)
    lines, errors = result.summary(args.dataset, args.qc)
    print("\n".join(lines))
    for line in errors:
        log.error("%s", line)
    return EXIT_FAILED if errors else EXIT_OK


def _run_train(args: argparse.Namespace) -> int:
    from autopipe import distributed, pipeline  # torch and every stage: only for the commands that need them
    from autopipe.device import choose_device
    from autopipe.preprocess.folds import parse_fold
    from autopipe.train.segmentation_task import default_loader_workers

    fold = parse_fold(args.fold)
    ws = arguments.workspace(args)
    root = checked_dataset(args, ws)
    ranks = distributed.ranks_from_environment()
    device = choose_device(args.device, ranks.local_rank)
    cores = max(1, default_workers() // distributed.local_world_size())
    set_threads(args.threads or cores)
    distributed.start(ranks, device.type)
    if not ranks.is_main:  # one voice: rank 0 reports, the others only warn
        log.setLevel(logging.WARNING)
    options = pipeline.TrainOptions(
        models=comma_list(args.configurations), epochs=args.epochs, iterations=args.iterations, resume=args.resume,
        force=args.force, seed=args.seed, optimizer=args.optimizer, validate=args.validate, mirror=args.mirror,
        loader_workers=default_loader_workers(device.type, cores) if args.loader_workers is None
        else args.loader_workers, progress=not args.quiet)
    # one training of a fold at a time; not under torchrun, where a refused rank 0 would leave the others waiting
    lock = output_lock(ws.results / LOCKS / root.name / f"fold_{fold}", f"train {fold}") \
        if ranks.world_size == 1 else contextlib.nullcontext()
    try:
        with lock:
            pipeline.train_fold(root, ws, fold, options, device, ranks)
            return EXIT_OK
    finally:
        distributed.stop()


def _run_predict(args: argparse.Namespace) -> int:
    from autopipe import pipeline
    from autopipe.device import choose_device

    ws = arguments.workspace(args)
    root = checked_dataset(args, ws)
    options = pipeline.PredictOptions(
        input=args.input, output=args.output, configuration=args.configuration, folds=comma_list(args.folds),
        approach=args.approach, probabilities=args.probabilities, mirror=args.mirror,
        accept_implausible=args.accept_implausible, workers=args.workers, progress=not args.quiet, bids=args.bids,
        dicom_seg=args.dicom_seg)
    key = hashlib.sha256(str(args.output.expanduser().resolve()).encode()).hexdigest()[:16]
    with output_lock(ws.results / LOCKS / "predict" / key, f"predict -o {args.output}"):
        remove_stale_temporaries(args.output)
        failed = pipeline.predict_cases(root, ws, options, choose_device(args.device))
    if failed:
        log.error("error: %d case(s) failed (reasons above)", len(failed))
        return EXIT_FAILED
    return EXIT_OK


def _run_evaluate(args: argparse.Namespace) -> int:
    from autopipe import pipeline
    from autopipe.evaluate.crossval import evaluate_folders

    if (args.predictions is None) != (args.references is None):
        raise AutopipeError("--predictions and --references go together", fix="give both folders, or neither")
    if args.predictions is not None:
        labels = tuple(int(v) for v in args.lesion_labels.split(","))
        result = evaluate_folders(args.predictions, args.references, labels, progress=not args.quiet,
                                  workers=args.workers)
        print(result.table)
        print(f"wrote {result['path']}")
        return EXIT_OK
    ws = arguments.workspace(args)
    root = checked_dataset(args, ws)
    with output_lock(ws.results / LOCKS / root.name / "evaluate", "evaluate"):
        pipeline.evaluate_cohort(root, ws, comma_list(args.configurations), comma_list(args.folds),
                                 progress=not args.quiet, workers=args.workers)
    return EXIT_OK


def _run_demo(args: argparse.Namespace) -> int:
    from autopipe.demo import run_demo

    return run_demo(args.workdir, cases=args.cases, workers=args.workers, hours=args.minutes / 60)


def _run_report(args: argparse.Namespace) -> int:
    from autopipe.report.render import write_report

    ws = arguments.workspace(args)
    root = resolve_dataset(args.dataset, ws.raw)
    print(write_report(root, ws, args.output, run_check=args.check, workers=args.workers))
    return EXIT_OK


COMMANDS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = [
    ("demo", "the whole pipeline on a synthetic cohort: synth, check, plan, preprocess, train fold 0, predict",
     arguments.demo_arguments, _run_demo),
    ("synth", "write a realistic synthetic cohort (FLAIR, lesions, k-space, hand function)",
     arguments.synth_arguments, _run_synth),
    ("import", "DICOM series or a BIDS dataset into a new cohort (the source is only read), then check it",
     arguments.import_arguments, _run_import),
    ("check", "validate a cohort: one line per problem, exit status 1 on errors", arguments.check_arguments,
     _run_check),
    ("plan", "fingerprint a cohort and write plans/DATASET/{fingerprint,plans,splits_final}.json",
     arguments.plan_arguments, _run_plan),
    ("preprocess", "skull strip, bias-correct, register and resample every case into preprocessed/DATASET/",
     arguments.preprocess_arguments, _run_preprocess),
    ("train", "train the planned models on one cross-validation fold, then validate its held-out cases",
     arguments.train_arguments, _run_train),
    ("predict", "segment new cases (CASE_0000.nii.gz ...) in their own space with the trained folds",
     arguments.predict_arguments, _run_predict),
    ("evaluate", "Dice, VOE, HD95, lesion detection and volumes, per case and across folds",
     arguments.evaluate_arguments, _run_evaluate),
    ("report", "one self-contained HTML file with every result of a cohort (results/DATASET/report.html)",
     arguments.report_arguments, _run_report),
]
