"""2D vs 3D U-Net (and their ensemble) on equal CPU-time budgets: the PVL study's 3D 76.2 vs 2D 71.5 Dice.

    python benchmarks/compare_2d_3d.py [--cases 24] [--spacing 1.5] [--minutes 15] [--folds 0,1,2]
                                       [--workdir DIR] [--mirror]

A cohort of small periventricular lesions is synthesized at --spacing mm (or reused from --workdir),
planned with a budget of --minutes per configuration and fold (the planner sizes each U-Net and its
number of epochs to fit it), preprocessed, and each configuration is trained on each fold with
`autopipe train -c CONFIG FOLD --continue` (an interrupted benchmark resumes), then validated on the
fold's held-out cases in their native space.

Printed, on the pooled held-out cases of the folds trained:
- 3d_fullres, 2d and their ensemble (mean of probabilities): mean Dice and lesion F1, with each case's
  paired Dice difference and a two-sided Wilcoxon signed-rank test for every pair;
- per configuration: planned and measured seconds per iteration and the training minutes spent;
- learning curves: the moving-average pseudo Dice (on validation patches, each epoch) against
  cumulative training minutes, with its slope over the last quarter of the budget (still climbing when
  clearly above 0), also saved as learning_curves.png in the work folder.

Minutes are wall-clock on this machine; 15 minutes on 2 cores are 30 CPU-minutes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from itertools import combinations
from pathlib import Path

import numpy as np

DATASET = "Dataset001_SynthPVL"
CONFIGURATIONS = ("3d_fullres", "2d")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--spacing", default="1.5", help="synthetic voxel size in mm (1, 1.5 or 2)")
    parser.add_argument("--minutes", type=float, default=15.0, help="training budget per configuration and fold")
    parser.add_argument("--folds", default="0,1,2", help="comma-separated folds to train, e.g. 0,1,2,3,4")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the cohort and runs here to resume")
    parser.add_argument("--mirror", action="store_true", help="validate with mirror test-time augmentation")
    args = parser.parse_args()
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="autopipe_2d3d_"))).resolve()
    folds = [int(f) for f in args.folds.split(",")]

    from autopipe.cli import main as autopipe
    from autopipe.paths import Workspace

    ws = Workspace(raw=workdir / "raw_data", plans=workdir / "plans", preprocessed=workdir / "preprocessed",
                   results=workdir / "results")
    folders = ["--raw-dir", str(ws.raw), "--plans-dir", str(ws.plans), "--preprocessed-dir", str(ws.preprocessed),
               "--results-dir", str(ws.results), "-q"]
    if not (ws.raw / DATASET / "dataset.json").is_file():
        _ok(autopipe(["synth", str(ws.raw / DATASET), "--cases", str(args.cases), "--spacing", args.spacing,
                      "--tasks", "segmentation", "-q"]))
    if not (ws.plans / DATASET / "plans.json").is_file():  # a rerun keeps the plan its runs were trained with
        _ok(autopipe(["plan", DATASET, *folders, "--hours", str(args.minutes / 60)]))
    _ok(autopipe(["preprocess", DATASET, *folders, "--no-qc"]))
    for fold in folds:
        for name in CONFIGURATIONS:
            _ok(autopipe(["train", str(fold), DATASET, *folders, "-c", name, "--continue",
                          *([] if args.mirror else ["--no-mirror"])]))
    report(workdir, ws, folds, args)


def report(workdir: Path, ws, folds: list[int], args: argparse.Namespace) -> None:
    """Print the comparison, the time table and the learning curves; save the curves' plot."""
    from autopipe.evaluate.best_configuration import decide, pooled_scores, wilcoxon

    plans = json.loads((ws.plans / DATASET / "plans.json").read_text())
    print(f"\n2D vs 3D: {args.minutes:g} min planned per configuration and fold, folds {args.folds}, "
          f"spacing {args.spacing} mm, mirror TTA {'on' if args.mirror else 'off'} (work folder {workdir})")
    scores = pooled_scores(ws.raw / DATASET, ws, folds)["scores"]
    if not scores:
        raise SystemExit("no configuration validated on every fold asked for")
    decision = decide(scores)
    cases = sorted(next(iter(scores.values())))
    print(f"\n{'candidate':<24}{'Dice':>8}{'sd':>7}{'lesion F1':>11}{'cases':>7}")
    for name, s in scores.items():
        d = [s[c][0] for c in cases]
        f1 = [s[c][1] for c in cases if np.isfinite(s[c][1])]
        print(f"{name:<24}{np.mean(d):>8.4f}{np.std(d):>7.3f}{np.mean(f1):>11.3f}{len(cases):>7}"
              + ("   <- chosen" if name == decision["chosen"] else ""))
    print(f"chosen: {decision['reason']}")
    print("\npaired Dice differences (first minus second), per held-out case:")
    for a, b in combinations(scores, 2):
        diff = [scores[a][c][0] - scores[b][c][0] for c in cases]
        test = wilcoxon(diff)
        print(f"  {a} - {b}: mean {np.mean(diff):+.4f}, median {np.median(diff):+.4f}, "
              f"better on {sum(x > 0 for x in diff)}/{len(diff)}, Wilcoxon p = {test['p']:.3g}")
        print("    " + " ".join(f"{c}:{x:+.3f}" for c, x in zip(cases, diff, strict=True)))

    print(f"\n{'configuration':<12}{'patch':>12}{'batch':>6}{'base':>5}{'epochs':>7}{'planned s/it':>13}"
          f"{'measured s/it':>14}{'train min/fold':>15}")
    curves = {}
    for name in CONFIGURATIONS:
        config = plans["configurations"][name]
        histories = [json.loads(p.read_text()) for fold in folds
                     if (p := ws.results / DATASET / name / f"fold_{fold}" / "progress.json").is_file()]
        if not histories:
            continue
        per_epoch = config["iterations_per_epoch"]["value"]
        measured = float(np.median([r["seconds"] for h in histories for r in h])) / per_epoch
        minutes = float(np.mean([sum(r["seconds"] for r in h) for h in histories])) / 60
        print(f"{name:<12}{'x'.join(map(str, config['patch_size']['value'])):>12}{config['batch_size']['value']:>6}"
              f"{config['features_per_stage']['value'][0]:>5}{len(histories[0]):>7}"
              f"{config['seconds_per_iteration']['value']:>13.3f}{measured:>14.3f}{minutes:>15.1f}")
        curves[name] = [learning_curve(h) for h in histories]

    print("\nlearning curves: moving-average pseudo Dice on validation patches at a share of the budget")
    print(f"{'configuration':<12}{'fold':>5}" + "".join(f"{q:>7.0%}" for q in (0.25, 0.5, 0.75, 1.0))
          + f"{'slope/10 min, last quarter':>28}")
    for name, runs in curves.items():
        for fold, (minutes, dice) in zip(folds, runs, strict=False):
            at = [dice[min(len(dice) - 1, int(np.searchsorted(minutes, q * minutes[-1])))] for q in
                  (0.25, 0.5, 0.75, 1.0)]
            print(f"{name:<12}{fold:>5}" + "".join(f"{v:>7.3f}" for v in at)
                  + f"{10 * final_slope(minutes, dice):>+28.4f}")
    plot = plot_curves(curves, folds, workdir / "learning_curves.png")
    print(f"(plot: {plot})")


def learning_curve(history: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(cumulative training minutes at each epoch's end, moving-average pseudo Dice) of one run."""
    minutes = np.cumsum([r["seconds"] for r in history]) / 60
    dice = np.array([np.nan if r.get("ema_pseudo_dice") is None else r["ema_pseudo_dice"] for r in history])
    return minutes, dice


def final_slope(minutes: np.ndarray, dice: np.ndarray) -> float:
    """Least-squares slope (Dice per minute) over the last quarter of the time: > 0 while still climbing."""
    last = (minutes >= 0.75 * minutes[-1]) & np.isfinite(dice)
    if last.sum() < 2:
        return float("nan")
    return float(np.polyfit(minutes[last], dice[last], 1)[0])


def plot_curves(curves: dict[str, list[tuple[np.ndarray, np.ndarray]]], folds: list[int], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for colour, (name, runs) in zip(("tab:blue", "tab:orange"), curves.items(), strict=False):
        for k, (fold, (minutes, dice)) in enumerate(zip(folds, runs, strict=False)):
            ax.plot(minutes, dice, color=colour, alpha=0.8, label=name if k == 0 else None,
                    linestyle=("-", "--", ":", "-.")[fold % 4])
    ax.set_xlabel("training minutes (wall clock, 2 cores)")
    ax.set_ylabel("moving-average pseudo Dice (validation patches)")
    ax.set_title("2D vs 3D U-Net learning curves (one line per fold)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _ok(code: int) -> None:
    if code != 0:
        raise SystemExit(f"autopipe exited with {code}")


if __name__ == "__main__":
    main()
