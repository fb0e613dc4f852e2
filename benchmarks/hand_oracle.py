"""Hand function from ground-truth lesion maps (the oracle): how close each predictor gets to the Bayes limit, by n.

    python benchmarks/hand_oracle.py [--n 50,100,200,400] [--draws 8] [--test 1000] [--pool 1000]
                                     [--models volume,pvl,smoothed,motor_load] [--workdir DIR]

No U-Net and no rendering: the synthetic generator's own subjects (cohort seed --seed) are drawn as the cohort
draws them (lesions from the subject's "lesions" stream, the hand-function label from its "hand_function"
stream, from the lesion mL inside the motor region: autopipe.synth.handfunction). Their lesion fractions are
averaged onto the 2 mm MNI grid that preprocessing registers to (a 2 mm voxel centred where every second 1 mm
voxel is: weights 1/4, 1/2, 1/4 per axis) and binarized at 1/2: a perfect segmentation after a perfect
registration (the 2 mm masks hold 10-25% less lesion than the 1 mm fractions the labels were drawn from: small
lesions fall under 1/2 per voxel). The features are then made by the pipeline's own code
(autopipe.models.lesion_features: 6 mm cells of lesion mL over the template brain, total load, count, largest
lesion).

Models, each fitted by the pipeline's own autopipe.train.hand_classifier.fit_classifier (L2 logistic regression,
C from the plan's grid by inner 5-fold cross-validation on log loss, class weights as the plan would set them):
    volume      total lesion mL alone (the one-number baseline)
    pvl         6 mm cells of lesion mL + total mL, count and largest lesion (the PVL study's model, unsmoothed)
    smoothed    the same features, the cell maps blurred by a Gaussian of 0, 6 or 12 mm chosen by the inner CV
                (the plan's default)
    motor_load  the generator's own feature, lesion mL inside its motor region: the ceiling any map can reach

Learning curve: for each n, --draws training sets of n subjects are drawn from the first --pool subjects; each
model is fitted on one (its hyper-parameters by inner 5-fold cross-validation on it alone) and scored on the
same --test independent subjects. Printed per model and n: accuracy, F1 (impaired = positive), balanced
accuracy, ROC AUC and log loss, mean over draws [2.5-97.5 percentile over draws], beside the Bayes accuracy of
the test subjects (mean of max(p, 1-p) under the generator's model) and the accuracy of the Bayes classifier
(p > 1/2) on their drawn labels. The features and arrays are cached in --workdir.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GRID_MM = 6.0
TEMPLATE = "mni152_2009a_sym"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="50,100,200,400", help="training-set sizes")
    parser.add_argument("--draws", type=int, default=8, help="training sets per size")
    parser.add_argument("--pool", type=int, default=1000, help="subjects the training sets are drawn from")
    parser.add_argument("--test", type=int, default=1000, help="independent test subjects")
    parser.add_argument("--seed", type=int, default=11, help="cohort seed of the generator")
    parser.add_argument("--models", default=None, help="comma-separated, default all")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/autopipe_hand_oracle"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)
    names = args.models.split(",") if args.models else list(MODELS)
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; known: {list(MODELS)}")
    started = time.monotonic()
    data = subjects(args.workdir, args.seed, args.pool + args.test)
    print(f"{args.pool + args.test} subjects (cohort seed {args.seed}) in {time.monotonic() - started:.0f} s; "
          f"{data['x'].shape[1]} features ({int(data['is_cell'].sum())} cells of {GRID_MM:g} mm)")
    test = np.arange(args.pool, args.pool + args.test)
    y, p_true = data["y"], data["p"]
    bayes = float(np.mean(np.maximum(p_true[test], 1 - p_true[test])))
    bayes_drawn = float(np.mean((p_true[test] > 0.5) == y[test]))
    print(f"test subjects: {args.test}, {y[test].mean():.0%} impaired; Bayes accuracy {bayes:.3f} (expected), "
          f"{bayes_drawn:.3f} (the Bayes classifier on the drawn labels)")

    from autopipe.evaluate.classification import classification_metrics

    rows = []
    for n in (int(v) for v in args.n.split(",")):
        for draw in range(args.draws):
            rng = np.random.default_rng([args.seed, n, draw])
            train = np.sort(rng.choice(args.pool, size=n, replace=False))
            if len(set(y[train])) < 2:
                continue
            for name in names:
                tick = time.monotonic()
                predict, smoothing_mm = fit_model(name, data, train, seed=draw)
                probability = predict(test)
                metrics = classification_metrics(y[test], probability)
                rows.append({**metrics, "model": name, "n": n, "draw": draw, "seconds": time.monotonic() - tick,
                             "smoothing": smoothing_mm})
            print(f"  n={n} draw {draw}: " + ", ".join(f"{r['model']} {r['accuracy']:.3f}" for r in rows
                                                        if r["n"] == n and r["draw"] == draw), flush=True)
    print(table(rows, names, bayes))
    print(f"\ntotal {(time.monotonic() - started) / 60:.1f} min")


def table(rows: list[dict], names: list[str], bayes: float) -> str:
    metrics = ("accuracy", "f1", "balanced_accuracy", "roc_auc", "log_loss")
    head = f"{'model':<12}{'n':>5}" + "".join(f"{m:>22}" for m in metrics) + f"{'blur mm':>9}{'s/fit':>7}"
    lines = ["", f"Learning curve (mean over training draws [2.5-97.5 percentile]); Bayes accuracy {bayes:.3f}:",
             head, "-" * len(head)]
    for name in names:
        for n in sorted({r["n"] for r in rows}):
            group = [r for r in rows if r["model"] == name and r["n"] == n]
            if not group:
                continue
            cells = []
            for m in metrics:
                values = np.array([r[m] for r in group], float)
                low, high = np.nanpercentile(values, [2.5, 97.5])
                cells.append(f"{np.nanmean(values):.3f} [{low:.3f}-{high:.3f}]")
            lines.append(f"{name:<12}{n:>5}" + "".join(f"{c:>22}" for c in cells)
                         + f"{np.mean([r['smoothing'] for r in group]):>9.1f}"
                         + f"{np.mean([r['seconds'] for r in group]):>7.1f}")
    return "\n".join(lines)


MODELS = {"volume": "total lesion mL", "pvl": "cells + summaries, no blur",
          "smoothed": "cells + summaries, blur by inner CV", "motor_load": "the generator's motor-region mL"}


def fit_model(name: str, data: dict, train: np.ndarray, seed: int) -> tuple[Callable[[np.ndarray], np.ndarray], float]:
    """Model `name` fitted on the training subjects as the pipeline fits it: (subject indices -> probability of
    impairment, the blur it chose in mm)."""
    from autopipe.models.lesion_features import coarse_grid, smooth_cells
    from autopipe.plan.models import BALANCED_BELOW, C_GRID, SMOOTHING_MM
    from autopipe.templates import load_template
    from autopipe.train.hand_classifier import Smoothing, fit_classifier

    names, y = data["names"], data["y"][train]
    share = min(y.mean(), 1 - y.mean())
    options = {"c_grid": C_GRID, "class_weight": "balanced" if share < BALANCED_BELOW else "none",
               "inner_folds": 5, "seed": seed}
    if name == "motor_load":
        x = data["motor_ml"][:, None]
        model = fit_classifier(x[train], y, ["motor_ml"], standardize=[True], **options)
        return lambda subjects: model.probability(x[subjects]), 0.0
    columns = [names.index("lesion_load_ml")] if name == "volume" else list(range(len(names)))
    x = data["x"][:, columns]
    chosen = [names[c] for c in columns]
    is_cell = np.array([n.startswith("cell_") for n in chosen])
    smoothing = None
    if name == "smoothed":
        _, mask = load_template(TEMPLATE, 2)
        grid = coarse_grid(mask.data.shape, mask.affine, GRID_MM)
        smoothing = Smoothing(is_cell, SMOOTHING_MM, lambda rows, sigma: smooth_cells(rows, grid, data["cells"], sigma))
    model = fit_classifier(x[train], y, chosen, standardize=list(~is_cell), smoothing=smoothing, **options)
    return lambda subjects: model.probability(x[subjects]), model.smoothing_mm


def subjects(workdir: Path, seed: int, count: int) -> dict:
    """Features, labels and true probabilities of subjects 0..count-1 of cohort `seed` (cached as .npz)."""
    cache = workdir / f"oracle_seed{seed}_n{count}_grid{GRID_MM:g}.npz"
    if cache.is_file():
        with np.load(cache) as f:
            return {k: f[k] for k in f.files if k != "names"} | {"names": [str(n) for n in f["names"]]}
    from autopipe.models.lesion_features import brain_cells, coarse_grid, feature_vector, template_brain_on_grid
    from autopipe.progress import track
    from autopipe.synth import handfunction, lesions
    from autopipe.synth.subject import stream
    from autopipe.synth.template import load_template as synth_template
    from autopipe.templates import load_template

    template = synth_template()
    _, mask = load_template(TEMPLATE, 2)
    grid = coarse_grid(mask.data.shape, mask.affine, GRID_MM)
    cells = brain_cells(template_brain_on_grid(TEMPLATE, mask.data.shape, mask.affine), grid)
    features = ("lesion_map", "lesion_load", "lesion_count", "largest_lesion")
    rows, y, p, motor = [], [], [], []
    names: list[str] = []
    for index in track(range(count), count, "oracle subjects"):
        lesion_map = lesions.rasterize_lesions(lesions.sample_lesions(stream(seed, index, "lesions"), template),
                                               template)
        load = lesion_map.volume_ml(template, template.motor)
        hand = handfunction.hand_function(stream(seed, index, "hand_function"), load)
        vector, names = feature_vector(on_2mm(lesion_map, template.gm.shape, mask.data.shape), grid, cells, features)
        rows.append(vector.astype(np.float32))
        y.append(int(hand.impaired))
        p.append(hand.probability)
        motor.append(load)
    data = {"x": np.stack(rows).astype(np.float64), "y": np.array(y), "p": np.array(p), "motor_ml": np.array(motor),
            "cells": cells, "cell_shape": np.array(grid.shape), "is_cell": np.array([n.startswith("cell_")
                                                                                     for n in names])}
    workdir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, names=np.array(names), **data)
    return data | {"names": names}


def on_2mm(lesion_map, fine_shape: tuple[int, ...], coarse_shape: tuple[int, ...]) -> np.ndarray:
    """A 1 mm template-space lesion map as a binary mask on the 2 mm grid with the same origin (fraction >= 1/2)."""
    from scipy import ndimage

    full = np.zeros(fine_shape, np.float32)
    if lesion_map.fractions.size:
        full[lesion_map.region()] = lesion_map.fractions
    for axis in range(3):
        full = ndimage.correlate1d(full, [0.25, 0.5, 0.25], axis=axis, mode="constant")
    coarse = full[::2, ::2, ::2]
    out = np.zeros(coarse_shape, np.uint8)
    out[tuple(slice(0, n) for n in coarse.shape)] = coarse >= 0.5
    return out


if __name__ == "__main__":
    main()
