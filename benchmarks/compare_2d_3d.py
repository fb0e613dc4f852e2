"""2D vs 3D U-Net on the synthetic cohort for the same CPU-time budget (the PVL study: 3D 76.2 vs 2D 71.5 Dice).

    python benchmarks/compare_2d_3d.py [--cases 16] [--minutes 6] [--folds 0] [--workdir DIR] [--mirror]

A 2 mm cohort is synthesized (or reused from --workdir), planned with a budget of --minutes per
configuration and fold (the planner sizes each U-Net to fit it), preprocessed, trained on the given
folds with `autopipe train`, validated on the held-out cases in their native space, and evaluated.
Prints the measured training minutes and the pooled validation metrics of both configurations.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=16)
    parser.add_argument("--minutes", type=float, default=6.0, help="training budget per configuration and fold")
    parser.add_argument("--folds", default="0", help="comma-separated folds to train, e.g. 0,1,2,3,4")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the cohort here to rerun faster")
    parser.add_argument("--mirror", action="store_true", help="validate with mirror test-time augmentation")
    args = parser.parse_args()
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="autopipe_2d3d_"))).resolve()

    from autopipe.cli import main as autopipe
    from autopipe.evaluate.crossval import compare_configurations, evaluate_crossvalidation
    from autopipe.paths import Workspace

    dataset = "Dataset001_SynthPVL"
    ws = Workspace(raw=workdir / "raw_data", plans=workdir / "plans", preprocessed=workdir / "preprocessed",
                   results=workdir / "results")
    folders = ["--raw-dir", str(ws.raw), "--plans-dir", str(ws.plans), "--preprocessed-dir", str(ws.preprocessed),
               "--results-dir", str(ws.results), "-q"]
    if not (ws.raw / dataset / "dataset.json").is_file():
        _ok(autopipe(["synth", str(ws.raw / dataset), "--cases", str(args.cases), "--spacing", "2", "-q"]))
    _ok(autopipe(["plan", dataset, *folders, "--hours", str(args.minutes / 60)]))
    _ok(autopipe(["preprocess", dataset, *folders, "--no-qc"]))
    for fold in args.folds.split(","):
        _ok(autopipe(["train", fold, dataset, *folders, "--continue", *([] if args.mirror else ["--no-mirror"])]))
    print(f"\n2D vs 3D, {args.minutes:g} min budget per configuration and fold, folds {args.folds}, "
          f"{args.cases} cases at 2 mm, mirror TTA {'on' if args.mirror else 'off'}")
    summaries = evaluate_crossvalidation(ws.raw / dataset, ws)
    plans = json.loads((ws.plans / dataset / "plans.json").read_text())
    for summary in summaries:
        name = summary["configuration"]
        minutes = sum(sum(r["seconds"] for r in json.loads(p.read_text()))
                      for p in (ws.results / dataset / name).glob("fold_*/progress.json")) / 60
        patch = "x".join(map(str, plans["configurations"][name]["patch_size"]["value"]))
        print(f"{name}: patch {patch}, trained {minutes:.1f} min over folds {summary['folds']}")
    print(compare_configurations(summaries))
    print(f"(work folder {workdir})")


def _ok(code: int) -> None:
    if code != 0:
        raise SystemExit(f"autopipe exited with {code}")


if __name__ == "__main__":
    main()
