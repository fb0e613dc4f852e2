"""Hand function on the synthetic cohort: logistic regression on predicted vs ground-truth lesion maps vs total
volume, and the joint U-Net (L = L_seg + r L_cls) for several r, all on the same 5 folds.

    python benchmarks/hand_function.py [--cases 40] [--minutes 2.4] [--r 0.1,1] [--joint-epochs N] [--workdir DIR]
                                       [--threads 2]

A 2 mm cohort without k-space is synthesized and planned with --minutes of training per U-Net and fold (or
both are reused from --workdir), preprocessed, and every fold's 3D U-Net is trained (`autopipe train FOLD
-c 3d_fullres,hand_function`): the logistic regressions follow once the last fold has validated. Then a
joint U-Net per r and fold, started from the fold's trained U-Net, with the plan's epochs (or --joint-epochs).
Prints the pooled table with 95% bootstrap intervals and the paired comparisons (`autopipe evaluate`), each
joint model's segmentation Dice over its held-out cases, where the coefficient map puts its weight, how much
of the motor region's true lesion volume the out-of-fold masks find, and the CPU minutes used.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--minutes", type=float, default=2.4, help="training budget per U-Net and fold")
    parser.add_argument("--r", default="0.1,1", help="joint-loss weights to train, comma-separated ('' for none)")
    parser.add_argument("--joint-epochs", type=int, default=None,
                        help="epochs of each joint U-Net from the trained one (default: the plan's)")
    parser.add_argument("--start-only", action="store_true",
                        help="also score the joint model's start (the trained U-Net and the head fitted on its maps, "
                             "no joint step): the r = 0 ablation, as joint_3d_fullres_start")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the cohort here to rerun faster")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="autopipe_hand_"))).resolve()

    import torch

    from autopipe.cli import main as autopipe
    from autopipe.distributed import Ranks
    from autopipe.evaluate.hand_function import evaluate_hand_function
    from autopipe.paths import Workspace
    from autopipe.predict.hand_inference import predict_joint_validation
    from autopipe.predict.validation import predict_validation
    from autopipe.preprocess.folds import load_fold
    from autopipe.train.fit import train_jobs
    from autopipe.train.hand_fold import labels_of
    from autopipe.train.jobs import joint_job

    dataset = "Dataset002_HandBench"
    ws = Workspace(raw=workdir / "raw_data", plans=workdir / "plans", preprocessed=workdir / "preprocessed",
                   results=workdir / "results")
    folders = ["--raw-dir", str(ws.raw), "--plans-dir", str(ws.plans), "--preprocessed-dir", str(ws.preprocessed),
               "--results-dir", str(ws.results), "--threads", str(args.threads)]
    if not (ws.raw / dataset / "dataset.json").is_file():
        _ok(autopipe(["synth", str(ws.raw / dataset), "--cases", str(args.cases), "--seed", "1", "--spacing", "2",
                      "--tasks", "segmentation,hand_function", "-q"]))
    if not (ws.plans / dataset / "plans.json").is_file():
        _ok(autopipe(["plan", dataset, *folders, "-q", "--hours", str(args.minutes / 60)]))
    _ok(autopipe(["preprocess", dataset, *folders, "-q", "--no-qc"]))
    started = time.monotonic()
    for fold in range(5):
        _ok(autopipe(["train", str(fold), dataset, *folders, "-q", "--continue", "--no-mirror",
                      "-c", "3d_fullres,hand_function"]))
    segmentation_minutes = (time.monotonic() - started) / 60

    device, joint_minutes, dice = torch.device("cpu"), {}, {}
    for r in (float(v) for v in args.r.split(",") if v.strip()):
        tick = time.monotonic()
        for k in range(5):
            fold = load_fold(ws.raw / dataset, ws, str(k))
            labels = labels_of(fold)
            job = joint_job(fold, ws, {c: v for c, v in labels.items() if v is not None}, r,
                            fold.plans.joint.hand_function_weight, fold.plans.joint.configuration,
                            epochs=args.joint_epochs)
            train_jobs([job], device, Ranks(), resume=True, progress=False)
            predict_validation(fold.spec, job.out_dir, fold.preprocessed, list(fold.val_cases), device, mirror=False,
                               progress=False)
            predict_joint_validation(job.out_dir, r, fold, labels, device, progress=False)
        joint_minutes[r] = (time.monotonic() - tick) / 60
        dice[job.name] = _pooled_dice(ws, dataset, job.out_dir.parent.name)
    dice["3d_fullres (plain U-Net)"] = _pooled_dice(ws, dataset, "3d_fullres")
    if args.start_only:
        for k in range(5):
            _score_start(load_fold(ws.raw / dataset, ws, str(k)), ws)

    summary = evaluate_hand_function(ws.raw / dataset, ws, dataset)
    plans = json.loads((ws.plans / dataset / "plans.json").read_text())
    config = plans["configurations"]["3d_fullres"]
    generator = json.loads((ws.raw / dataset / "groundtruth" / "generator.json").read_text())["hand_function"]
    print(f"\n{args.cases} cases at 2 mm, {generator['impaired_fraction']:.0%} impaired, expected Bayes accuracy "
          f"{generator['expected_bayes_accuracy']:.3f} (labels drawn from the motor-region lesion load)")
    print(f"3D U-Net: patch {'x'.join(map(str, config['patch_size']['value']))}, {config['epochs']['value']} epochs x "
          f"{config['iterations_per_epoch']['value']} iterations per fold; 5 folds")
    print(summary["text"])
    print("\nsegmentation Dice over held-out cases (pooled mean over 5 folds):")
    for name, value in dice.items():
        print(f"   {name:<32} {value:.3f}")
    _print_region_recall(ws, dataset)
    comparison = summary.get("comparisons", {}).get("predicted vs oracle")
    if comparison:
        low, high = comparison["accuracy_difference_ci"]
        margin = 0.05 * summary["models"]["oracle"]["pooled"]["accuracy"]
        print(f"\npredicted / oracle accuracy {comparison['accuracy_ratio']:.3f} "
              f"[{comparison['accuracy_ratio_ci'][0]:.3f}, {comparison['accuracy_ratio_ci'][1]:.3f}]; the paired "
              f"interval's half-width {(high - low) / 2:.3f} at n = {comparison['n']}: resolving a difference of 5% of "
              f"the oracle's accuracy ({margin:.3f}) needs n of about "
              f"{comparison['n'] * ((high - low) / 2 / margin) ** 2:.0f}")
    print(f"\nCPU minutes: segmentation + logistic regressions {segmentation_minutes:.1f}; joint U-Nets "
          + ", ".join(f"r={r:g}: {m:.1f}" for r, m in joint_minutes.items()))


def _score_start(fold, ws) -> None:
    """The joint model as it starts, before any joint step, scored on the fold's held-out subjects."""
    import torch

    from autopipe.files import write_json
    from autopipe.layout import fold_dir, joint_result
    from autopipe.train.hand_fold import labels_of
    from autopipe.train.jobs import joint_job
    from autopipe.train.joint_start import BrainSource, warm_start

    out = fold_dir(ws, fold.spec.name, f"joint_{fold.plans.joint.configuration}_start", fold.name)
    if joint_result(out).is_file():
        return
    labels = {c: v for c, v in labels_of(fold).items() if v is not None}
    job = joint_job(fold, ws, labels, 1.0, 1.0, fold.plans.joint.configuration)
    network = job.task.build().eval()
    brains = BrainSource(fold.preprocessed, torch.device("cpu"))
    warm_start(network, job.builds_on.checkpoint, brains, {c: labels[c] for c in fold.train_cases if c in labels},
               job.task.joint_settings, job.task.seed)
    with torch.no_grad():
        cases = {c: {"probability": float(torch.sigmoid(network.brain_logits([brains(c)]))[0]), "label": labels[c]}
                 for c in fold.val_cases if c in labels}
    out.mkdir(parents=True, exist_ok=True)
    write_json(joint_result(out), {"model": out.parent.name, "r": 0.0, "fold": fold.name, "cases": cases})


def _print_region_recall(ws, dataset: str) -> None:
    """What segmentation loses where the labels come from: over the held-out subjects (each by the fold that held
    it out), the ground-truth lesion volume inside the generating motor region that the predicted masks find."""
    import numpy as np

    from autopipe.cohort.image_io import read_volume
    from autopipe.evaluate.hand_function import GENERATING_REGION
    from autopipe.files import read_json
    from autopipe.layout import PREDICTOR_FILE, case_paths, hand_dir
    from autopipe.models.lesion_features import CoarseGrid, nearest_on_grid, on_full_grid
    from autopipe.preprocess.folds import load_fold
    from autopipe.preprocess.properties import read_properties
    from autopipe.preprocess.storage import read_case

    root = ws.raw / dataset
    region_volume = read_volume(root / GENERATING_REGION)
    sums = {"region": np.zeros(3), "brain": np.zeros(3)}  # truth, predicted, overlap (voxels)
    loads = []
    for path in sorted(hand_dir(ws, dataset).glob(f"fold_*/{PREDICTOR_FILE}")):
        predictor = read_json(path)
        fold = load_fold(root, ws, predictor["fold"])
        grid = CoarseGrid.from_json(predictor["grid"])
        region = nearest_on_grid((region_volume.data > 0).astype(np.uint8), region_volume.affine, grid.fine_shape,
                                 grid.fine_affine) > 0
        for case in predictor["held_out_cases"]:
            predicted = read_volume(Path(predictor["segmentations"][case])).data > 0
            properties = read_properties(case_paths(fold.preprocessed, case)[1])
            truth = on_full_grid(read_case(case_paths(fold.preprocessed, case)[0], ("seg",))["seg"] > 0, properties)
            for name, inside in (("region", region), ("brain", np.ones_like(region))):
                sums[name] += [np.sum(truth & inside), np.sum(predicted & inside), np.sum(truth & predicted & inside)]
            loads.append((np.sum(truth & region), np.sum(predicted & region)))
    print("\nout-of-fold predicted masks against the ground truth (template space, held-out subjects pooled):")
    for name, (truth, predicted, overlap) in sums.items():
        print(f"   {'motor region' if name == 'region' else 'whole brain':<13} recall {overlap / max(truth, 1):.3f}  "
              f"precision {overlap / max(predicted, 1):.3f}  Dice {2 * overlap / max(truth + predicted, 1):.3f}  "
              f"(true {truth:.0f} voxels, predicted {predicted:.0f})")
    truth, predicted = np.array(loads, float).T
    if truth.std() > 0 and predicted.std() > 0:
        print(f"   per-subject motor-region lesion load, predicted vs true: Pearson r "
              f"{np.corrcoef(truth, predicted)[0, 1]:.3f} over {len(loads)} subjects")


def _pooled_dice(ws, dataset: str, name: str) -> float:
    from autopipe.evaluate.crossval import evaluate_crossvalidation

    summary = evaluate_crossvalidation(ws.raw / dataset, ws, [name])[0]
    return float(summary["summary"]["pooled"]["dice"]["mean"])


def _ok(code: int) -> None:
    if code != 0:
        raise SystemExit(code)


if __name__ == "__main__":
    main()
