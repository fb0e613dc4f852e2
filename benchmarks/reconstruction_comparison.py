"""The MTLRS paper's table and the ablations that explain it, on a synthetic multicoil cohort, in one command.

    python benchmarks/reconstruction_comparison.py --workdir DIR [--folds 0,1,2,3,4] [--epochs 6]
                                                   [--cirim-epochs 12] [--ablations] [--streams 2]
                                                   [--cases 16] [--labels tissue]

A 2 mm cohort with multicoil k-space (8 coils, 2D Poisson disc at 7.5x) and tissue + lesion labels (CSF,
grey matter, white matter, lesion; --labels lesion for lesion-only) is synthesized, planned and
preprocessed, or reused from --workdir (delete plans/ to plan again). Every model the approaches need
(cirim, segmentation_fully_sampled, segmentation_on_cirim, end_to_end, joint, mtlrs) is trained on every
fold with `autopipe train FOLD -c ... --continue`, so an interrupted benchmark resumes.

The budget is equal in optimizer steps: with --epochs E every model but cirim trains E epochs over the
fold's training slices (one slice per step) and cirim --cirim-epochs (default E), so every approach costs
the fold's CIRIM plus E epochs of its own model; end_to_end, joint and mtlrs start from that CIRIM (warm
start), pretrained and sequential use it as it is. Without --epochs the plan's epochs (from --minutes).

--ablations adds, on the same folds (or --ablation-folds, the same for every row) and the same cohort,
MTLRS variants, each trained in its own results folder from a copy of the plan with one change, starting
from the same fold's CIRIM:
    coupling off           the joint row of the main table (the same cascades, no coupling)
    no warm start          multitask.warm_start false: from scratch, the same E epochs of its own
    every cascade          multitask.segmentation_supervision every_cascade
    lesion coupling        multitask.coupling lesion (only the lesion probability is coupled)
    loss 0.5/0.5           multitask.segmentation_weight 0.5, reconstruction_weight 0.5

--streams N trains N folds (or variants) at a time, each process with 2/N threads (on 2 cores two
one-thread processes train more steps per minute than one two-thread process: small convolutions
parallelize poorly). Steps, not seconds, make the budget, so the results do not depend on it.

Printed: the paper's table (SSIM, PSNR, NMSE, lesion Dice, per-lesion Dice, tissue + lesion Dice, each
mean ± SD over the pooled held-out subjects; Dice per class; a paired Wilcoxon test of each approach
against MTLRS; Spearman SSIM vs per-lesion Dice per approach and over subjects), the ablation table,
each model's steps and minutes, and its validation curve (mean over folds, per epoch), also saved as
curves.png in the work folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

DATASET = "Dataset001_SynthPVL"
VARIANTS = {
    "no warm start": {"warm_start": False},
    "every cascade": {"segmentation_supervision": "every_cascade"},
    "lesion coupling": {"coupling": "lesion"},
    "loss 0.5/0.5": {"segmentation_weight": 0.5, "reconstruction_weight": 0.5},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=16)
    parser.add_argument("--slices", type=int, default=12, help="k-space slices per case")
    parser.add_argument("--labels", default="tissue", choices=("tissue", "lesion"))
    parser.add_argument("--minutes", type=float, default=5.0, help="planning budget per model and fold")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of every model (equal steps)")
    parser.add_argument("--cirim-epochs", type=int, default=None, help="epochs of cirim (default --epochs)")
    parser.add_argument("--folds", default="0,1,2,3,4", help="comma-separated folds")
    parser.add_argument("--ablations", action="store_true", help="also train and tabulate the MTLRS variants")
    parser.add_argument("--ablation-folds", default=None, help="folds of the ablation table (default --folds)")
    parser.add_argument("--cs", action="store_true", help="also the compressed-sensing baseline (its weight search "
                                                          "costs minutes per fold)")
    parser.add_argument("--streams", type=int, default=1, help="trainings at a time (threads split between them)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the cohort and runs here to resume")
    args = parser.parse_args()
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="autopipe_mtlrs_"))).resolve()
    folds = args.folds.split(",")
    ablation_folds = args.ablation_folds.split(",") if args.ablation_folds else folds
    if not set(ablation_folds) <= set(folds):
        raise SystemExit(f"--ablation-folds {args.ablation_folds} must be among --folds {args.folds}")

    from autopipe.cli import main as autopipe
    from autopipe.models.slice_models import models_for

    main_ws = _workspace(workdir, workdir)
    if not (workdir / "raw_data" / DATASET / "dataset.json").is_file():
        _ok(autopipe(["synth", str(workdir / "raw_data" / DATASET), "--cases", str(args.cases), "--spacing", "2",
                      "--kspace-slices", str(args.slices), "--labels", args.labels, "-q"]))
    if not (workdir / "plans" / DATASET / "plans.json").is_file():  # a rerun keeps the plan it trained with
        _ok(autopipe(["plan", DATASET, *_folders(main_ws), "--hours", str(args.minutes / 60)]))
    _ok(autopipe(["preprocess", DATASET, *_folders(main_ws), "--no-qc"]))
    plans = json.loads((workdir / "plans" / DATASET / "plans.json").read_text())
    models = models_for(plans["multitask"]["approaches"]["value"])
    threads = max(1, 2 // args.streams)
    epochs = ["--epochs", str(args.epochs)] if args.epochs else []
    cirim_epochs = ["--epochs", str(args.cirim_epochs)] if args.cirim_epochs else epochs
    calls = [(["cirim"], cirim_epochs), ([*(["cs"] if args.cs else []), *(m for m in models if m != "cirim")], epochs)]

    started = time.monotonic()
    with ThreadPoolExecutor(args.streams) as pool:
        mains = {f: pool.submit(_train_main, main_ws, f, calls, threads, workdir / "logs" / f"main_fold_{f}.log")
                 for f in folds}
        variants: list[Future] = []
        if args.ablations:
            for name, change in VARIANTS.items():
                ws = _variant(workdir, name, change)
                variants += [pool.submit(_train_variant, mains[f], main_ws, ws, f, epochs, threads,
                                         workdir / "logs" / f"{_slug(name)}_fold_{f}.log") for f in ablation_folds]
        for future in [*mains.values(), *variants]:
            future.result()
    wall = time.monotonic() - started

    from autopipe.evaluate.approach_comparison import compare_crossvalidation, format_comparison, summarize

    r, m = plans["reconstruction"], plans["multitask"]
    print(f"\n{args.cases} cases at 2 mm, {args.slices} k-space slices each, {args.labels} labels "
          f"({', '.join(m.get('segmentation_classes', {}).get('value', ['background', 'lesion']))}); matrix "
          f"{'x'.join(map(str, r['matrix']['value']))}, {r['coils']['value']} coils, {r['mask_type']['value']} at "
          f"{r['acceleration']['value']:.2f}x; folds {args.folds}")
    print(f"networks: CIRIM {r['cascades']['value']} cascades x {r['time_steps']['value']} steps x "
          f"{r['hidden_channels']['value']} channels; segmentation U-Nets {m['segmentation_channels']['value']} "
          f"channels; lr {r['learning_rate']['value']:g}")
    print(_budget_table(main_ws, models, folds))
    summary = compare_crossvalidation(workdir / "raw_data" / DATASET, main_ws, folds=folds)
    print("\nThe paper's table (held-out subjects of every fold):")
    print(summary["text"])
    if args.ablations:
        ablation = summarize(_ablation_results(workdir, main_ws, ablation_folds))
        print(f"\nAblations of MTLRS (folds {', '.join(ablation_folds)} for every row, the same subjects; each row "
              "changes one thing; tests against mtlrs):")
        print(format_comparison(ablation))
    print(_curves(workdir, main_ws, models, folds))
    print(f"\nwall-clock of the training calls: {wall / 60:.1f} min with {args.streams} stream(s) "
          f"x {threads} thread(s) (work folder {workdir})")


def _workspace(workdir: Path, base: Path):
    from autopipe.paths import Workspace

    return Workspace(raw=workdir / "raw_data", plans=base / "plans", preprocessed=workdir / "preprocessed",
                     results=base / "results")


def _folders(ws) -> list[str]:
    return ["--raw-dir", str(ws.raw), "--plans-dir", str(ws.plans), "--preprocessed-dir", str(ws.preprocessed),
            "--results-dir", str(ws.results)]


def _slug(name: str) -> str:
    return name.replace(" ", "_").replace("/", "_")


def _variant(workdir: Path, name: str, change: dict):
    """The variant's workspace: the main plan with `change` in its multitask section (approaches: mtlrs)."""
    ws = _workspace(workdir, workdir / "ablations" / _slug(name))
    plans_dir = ws.plans / DATASET
    if not (plans_dir / "plans.json").is_file():
        shutil.copytree(workdir / "plans" / DATASET, plans_dir, dirs_exist_ok=True)
        plans = json.loads((plans_dir / "plans.json").read_text())
        section = plans["multitask"]
        for key, value in {**change, "approaches": ["mtlrs"]}.items():
            section[key] = {"value": value, "reason": f"ablation '{name}' of benchmarks/reconstruction_comparison.py"}
        (plans_dir / "plans.json").write_text(json.dumps(plans, indent=2))
    return ws


def _train(ws, fold: str, models: list[str], epochs: list[str], threads: int, log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "autopipe", "train", fold, DATASET, *_folders(ws), "--continue", "-q",
               "--threads", str(threads), "-c", ",".join(models), *epochs]
    with log.open("a") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise SystemExit(f"`{' '.join(command)}` exited with {code}; see {log}")


def _train_main(ws, fold: str, calls: list[tuple[list[str], list[str]]], threads: int, log: Path) -> None:
    for models, epochs in calls:
        _train(ws, fold, models, epochs, threads, log)


def _train_variant(main: Future, main_ws, ws, fold: str, epochs: list[str], threads: int, log: Path) -> None:
    """After the main fold: its trained CIRIM copied in (the same starting point), then the variant's mtlrs."""
    main.result()
    source = main_ws.results / DATASET / "reconstruction" / "cirim" / f"fold_{fold}"
    target = ws.results / DATASET / "reconstruction" / "cirim" / f"fold_{fold}"
    if not (target / "checkpoint_final.pt").is_file():
        shutil.copytree(source, target, dirs_exist_ok=True)
    _train(ws, fold, ["mtlrs"], epochs, threads, log)


def _ablation_results(workdir: Path, main_ws, folds: list[str]) -> list[dict]:
    """Per fold, the main table's mtlrs and joint ("coupling off") and every variant's mtlrs, as one result."""
    from autopipe.evaluate.approach_comparison import compare_crossvalidation, read_comparison

    for name in VARIANTS:
        compare_crossvalidation(workdir / "raw_data" / DATASET, _workspace(workdir, workdir / "ablations" /
                                                                         _slug(name)), folds=folds)
    results = []
    for fold in folds:
        main = read_comparison(main_ws.results / DATASET / "reconstruction" / "comparison" / f"fold_{fold}.json")
        rows = {"mtlrs": main["per_subject"]["mtlrs"], "coupling off (joint)": main["per_subject"]["joint"]}
        seconds = {"mtlrs": main["seconds_per_slice"]["mtlrs"],
                   "coupling off (joint)": main["seconds_per_slice"]["joint"]}
        for name in VARIANTS:
            ws = _workspace(workdir, workdir / "ablations" / _slug(name))
            variant = read_comparison(ws.results / DATASET / "reconstruction" / "comparison" / f"fold_{fold}.json")
            rows[name] = variant["per_subject"]["mtlrs"]
            seconds[name] = variant["seconds_per_slice"]["mtlrs"]
        results.append({"fold": fold, "methods": list(rows), "per_subject": rows, "seconds_per_slice": seconds})
    return results


def _budget_table(ws, models: list[str], folds: list[str]) -> str:
    """Per model, over the folds: epochs, optimizer steps (epochs x the fold's training slices), minutes."""
    from autopipe.layout import kspace_dir
    from autopipe.preprocess.kspace_prep import kspace_slice_count

    splits = json.loads((ws.plans / DATASET / "splits_final.json").read_text())
    folder = kspace_dir(next((ws.preprocessed / DATASET).glob("*mm")))
    slices = {f: sum(kspace_slice_count(folder / f"{c}.h5") for c in splits[int(f)]["train"]
                     if (folder / f"{c}.h5").is_file()) for f in folds}
    lines = [f"{'model':<28}{'epochs':>7}{'steps':>8}{'minutes':>9}{'median s/epoch':>16}"]
    for name in models:
        steps, epochs, seconds = 0, 0, []
        for fold in folds:
            history = json.loads((ws.results / DATASET / "reconstruction" / name / f"fold_{fold}" /
                                  "progress.json").read_text())
            epochs += len(history)
            steps += len(history) * slices[fold]
            seconds += [e["seconds"] for e in history]
        lines.append(f"{name:<28}{epochs:>7}{steps:>8}{sum(seconds) / 60:>9.1f}{float(np.median(seconds)):>16.1f}")
    return "budget (over all folds; steps = optimizer steps, one slice each):\n" + "\n".join(lines)


def _curves(workdir: Path, ws, models: list[str], folds: list[str]) -> str:
    """Validation loss and pseudo Dice per epoch, mean over folds, per model; also drawn to curves.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axis, dice_axis) = plt.subplots(1, 2, figsize=(11, 4))
    lines = ["\nvalidation curves, mean over folds (loss | pseudo Dice over the foreground classes), per epoch:"]
    for name in models:
        histories = [json.loads((ws.results / DATASET / "reconstruction" / name / f"fold_{f}" /
                                 "progress.json").read_text()) for f in folds]
        length = min(len(h) for h in histories)
        loss = np.mean([[e["val_loss"] for e in h[:length]] for h in histories], axis=0)
        dices = np.array([[_number(e.get("pseudo_dice")) for e in h[:length]] for h in histories])
        dice = np.nanmean(dices, axis=0) if np.isfinite(dices).any() else None  # None: cirim segments nothing
        epochs = np.arange(1, length + 1)
        loss_axis.plot(epochs, loss, label=name)
        text = " ".join(f"{v:.4f}" for v in loss)
        if dice is not None:
            dice_axis.plot(epochs, dice, label=name)
            text += " | " + " ".join(f"{v:.3f}" for v in dice)
        lines.append(f"  {name:<28}{text}")
    loss_axis.set(xlabel="epoch", ylabel="validation loss", yscale="log", title="loss (each model's own)")
    dice_axis.set(xlabel="epoch", ylabel="pseudo Dice", title="validation pseudo Dice")
    for axis in (loss_axis, dice_axis):
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(workdir / "curves.png", dpi=100)
    plt.close(figure)
    return "\n".join(lines)


def _number(value: float | None) -> float:
    """A progress.json number; null (no Dice for a reconstruction-only model) as nan."""
    return np.nan if value is None else float(value)


def _ok(code: int) -> None:
    if code != 0:
        raise SystemExit(f"autopipe exited with {code}")


if __name__ == "__main__":
    main()
