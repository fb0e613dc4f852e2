"""The MTLRS paper's comparison on the synthetic cohort: zero-filled, CG-SENSE, CS, and the four approaches.

    python benchmarks/reconstruction_comparison.py [--cases 16] [--minutes 5] [--folds 0] [--workdir DIR]

A 2 mm cohort with multicoil k-space (8 coils, 2D Poisson disc at 7.5x) is synthesized and planned with a
budget of --minutes per model and fold (the planner sizes CIRIM and MTLRS to fit it), or both are reused
from --workdir (delete plans/ to plan again); it is preprocessed, and `autopipe train FOLD -c cs,cirim,...`
trains every model the approaches need.
Prints the comparison table (SSIM, PSNR, NMSE, Dice, per-lesion Dice, seconds per slice, Spearman), the
training throughput of every model (slices per second over the median epoch, which includes validation)
and the CPU minutes used.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=16)
    parser.add_argument("--slices", type=int, default=12, help="k-space slices per case")
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per model and fold")
    parser.add_argument("--epochs", type=int, default=None, help="override the planned epochs of every model")
    parser.add_argument("--folds", default="0", help="comma-separated folds, e.g. 0,1,2,3,4")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the cohort here to rerun faster")
    args = parser.parse_args()
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="autopipe_mtlrs_"))).resolve()

    from autopipe.cli import main as autopipe
    from autopipe.evaluate.approach_comparison import compare_crossvalidation
    from autopipe.models.slice_models import MODEL_NAMES
    from autopipe.paths import Workspace

    dataset = "Dataset001_SynthPVL"
    ws = Workspace(raw=workdir / "raw_data", plans=workdir / "plans", preprocessed=workdir / "preprocessed",
                   results=workdir / "results")
    folders = ["--raw-dir", str(ws.raw), "--plans-dir", str(ws.plans), "--preprocessed-dir", str(ws.preprocessed),
               "--results-dir", str(ws.results), "-q"]
    if not (ws.raw / dataset / "dataset.json").is_file():
        _ok(autopipe(["synth", str(ws.raw / dataset), "--cases", str(args.cases), "--spacing", "2",
                      "--kspace-slices", str(args.slices), "-q"]))
    if not (ws.plans / dataset / "plans.json").is_file():  # a rerun keeps the plan its models were trained with
        _ok(autopipe(["plan", dataset, *folders, "--hours", str(args.minutes / 60)]))
    _ok(autopipe(["preprocess", dataset, *folders, "--no-qc"]))
    plans = json.loads((ws.plans / dataset / "plans.json").read_text())
    approaches = plans["multitask"]["approaches"]["value"]
    from autopipe.models.slice_models import models_for

    models = models_for(approaches)
    started = time.monotonic()
    for fold in args.folds.split(","):
        _ok(autopipe(["train", fold, dataset, *folders, "--continue", "-c", ",".join(["cs", *models]),
                      *(["--epochs", str(args.epochs)] if args.epochs else [])]))
    wall = time.monotonic() - started

    r, m = plans["reconstruction"], plans["multitask"]
    print(f"\n{args.cases} cases at 2 mm, {args.slices} k-space slices each, matrix "
          f"{'x'.join(map(str, r['matrix']['value']))}, {r['coils']['value']} coils, "
          f"{r['mask_type']['value']} at {r['acceleration']['value']:.2f}x; folds {args.folds}")
    print(f"networks: CIRIM {r['cascades']['value']} cascades x {r['time_steps']['value']} steps x "
          f"{r['hidden_channels']['value']} channels; segmentation U-Nets {m['segmentation_channels']['value']} "
          f"channels; lr {r['learning_rate']['value']:g}; budget {args.minutes:g} min per model and fold")
    print(f"{'model':<28}{'epochs':>7}{'steps':>8}{'minutes':>9}{'median s/epoch':>16}{'slices/s':>10}")
    total = 0.0
    for name in MODEL_NAMES:
        runs = [json.loads(p.read_text()) for p in (ws.results / dataset / "reconstruction" / name).glob(
            "fold_*/progress.json")]
        if not runs:
            continue
        epochs = [e["seconds"] for h in runs for e in h]
        steps = _train_steps(ws, dataset, name, args.folds)
        total += sum(epochs)
        median = float(np.median(epochs))  # robust to epochs slowed by other work on the machine
        print(f"{name:<28}{len(epochs):>7}{steps:>8}{sum(epochs) / 60:>9.1f}{median:>16.1f}"
              f"{steps / len(epochs) / median:>10.2f}")
    print(f"training + validation of all models: {total / 60:.1f} min; whole `autopipe train` incl. the CS weight "
          f"search and the comparison: {wall / 60:.1f} min")
    summary = compare_crossvalidation(ws.raw / dataset, ws, folds=args.folds.split(","))
    print(summary["text"])
    print(f"(work folder {workdir})")


def _train_steps(ws, dataset: str, name: str, folds: str) -> int:
    """Training steps taken: slices per epoch x epochs, read from the checkpoints' settings and history."""
    import torch

    steps = 0
    for fold in folds.split(","):
        path = ws.results / dataset / "reconstruction" / name / f"fold_{fold}" / "checkpoint_final.pt"
        state = torch.load(path, map_location="cpu", weights_only=True)
        steps += int(state.get("steps", 0))
    return steps


def _ok(code: int) -> None:
    if code != 0:
        raise SystemExit(f"autopipe exited with {code}")


if __name__ == "__main__":
    main()
