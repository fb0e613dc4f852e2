"""`autopipe demo`: the whole pipeline on built-in data, in its own folder so real work is never touched.

Synthesize a small 2 mm cohort, check it, plan it for a short training budget, preprocess it, train
fold 0 (3D and 2D U-Net), validate and evaluate the held-out cases, train the reconstruction models
(CIRIM, MTLRS and the other approaches) briefly and print their comparison, train folds 1-4 briefly so that
every subject has an out-of-fold segmentation for the hand-function predictors (and a joint U-Net on fold 0),
segment two new cases (with their hand function) and reconstruct one k-space file with `predict`, and say
where everything went. Re-running reuses what an
earlier run finished.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from autopipe.cohort.check import check_cohort
from autopipe.device import choose_device
from autopipe.distributed import Ranks
from autopipe.errors import AutopipeError
from autopipe.evaluate.crossval import compare_configurations, evaluate_crossvalidation
from autopipe.evaluate.hand_function import evaluate_hand_function
from autopipe.layout import comparison_dir
from autopipe.models.slice_models import models_for
from autopipe.paths import Workspace
from autopipe.pipeline import TrainOptions, train_fold
from autopipe.plan.planner import plan_dataset
from autopipe.plan.plans_file import load_plans
from autopipe.plan.splits import load_splits
from autopipe.predict.kspace_cases import predict_kspace_folder
from autopipe.predict.new_cases import predict_folder
from autopipe.preprocess.runner import preprocess_dataset
from autopipe.runtime import default_workers, set_threads
from autopipe.synth.cohort import SynthOptions
from autopipe.synth.output import synthesize_atomically
from autopipe.train.jobs import planned_joint_name
from autopipe.train.segmentation_task import default_loader_workers

log = logging.getLogger("autopipe")

DEMO_DATASET = "Dataset001_SynthPVL"
DEMO_TEST_CASES = 2
DEMO_HOURS = 0.1  # training budget per configuration: the planner sizes the U-Nets to fit it
DEMO_RECON_EPOCHS = 8  # per reconstruction model, 0.5-2 min each on 2 CPU cores: MTLRS segments after ~600 steps
DEMO_HAND_EPOCHS = 3  # per extra fold of the 3D U-Net and for the joint U-Net: ~1 min each


def run_demo(workdir: Path, cases: int = 16, workers: int = 1, seed: int = 0, hours: float = DEMO_HOURS) -> int:
    """Run every available stage on a synthetic cohort under `workdir`; return the exit status."""

    workdir = workdir.expanduser().resolve()
    ws = Workspace.under(workdir)
    cohort = ws.raw / DEMO_DATASET
    started = time.monotonic()
    preprocessed = prepare_cohort(cohort, ws, cases, workers, seed, hours)  # steps 1-4

    _step(5, "train fold 0: 3D and 2D U-Net, then validate and evaluate its held-out cases in their native space")
    plans = load_plans(ws.plans_dir(DEMO_DATASET) / "plans.json")
    train_demo_fold(cohort, ws, list(plans.configurations))

    _step(6, "cross-validation summary (fold 0 only) and the postprocessing decision")
    summaries = evaluate_crossvalidation(cohort, ws)
    for summary in summaries:
        log.info("%s", summary["text"])
    log.info("\n%s", compare_configurations(summaries))

    _step(7, f"accelerated MRI: reconstruct {plans.reconstruction.acceleration:.1f}x undersampled k-space and segment "
             f"it, the ways the MTLRS paper compares and joint ({DEMO_RECON_EPOCHS} epochs per model: a short run)")
    train_demo_fold(cohort, ws, ["cs", *models_for(plans.multitask.approaches)], epochs=DEMO_RECON_EPOCHS)

    if plans.hand_function is not None:
        _step(8, f"hand function: train the 3D U-Net of folds 1-4 briefly ({DEMO_HAND_EPOCHS} epochs) so every "
                 "subject has a segmentation by a network that never saw it, then the logistic regressions of all "
                 "folds and a joint U-Net (fold 0)")
        train_hand_function(cohort, ws, plans)

    _step(9, f"predict {DEMO_TEST_CASES} new cases (imagesTs) in their native space, and one k-space file")
    predictions = workdir / "predictions"
    predict_new_cases(cohort, ws, plans, predictions, workers)

    log.info("\nDone in %.0f s. Where everything went:", time.monotonic() - started)
    log.info("   cohort        %s", cohort)
    log.info("   ground truth  %s", cohort / "groundtruth")
    log.info("   plans         %s", ws.plans_dir(DEMO_DATASET))
    log.info("   preprocessed  %s", preprocessed)
    log.info("   QC pictures   %s (montage.png: every case at a glance)", preprocessed / "qc")
    log.info("   training      %s (progress.png: loss and Dice curves per configuration)", ws.results / DEMO_DATASET)
    log.info("   comparison    %s (reconstruction + segmentation approaches, per subject)",
             comparison_dir(ws, DEMO_DATASET))
    log.info("   hand function %s (summary.json, calibration.png, coefficient maps)",
             ws.results / DEMO_DATASET / "hand_function")
    log.info("   predictions   %s", predictions)
    log.info("Next: look at progress.png and the QC montage, read plans.json (every value says why it was chosen), "
             "or run your own cohort: check, plan, preprocess, train 0..4, evaluate, predict.")
    from autopipe.report.render import write_report  # the last step: every result above in one HTML file

    report = write_report(cohort, ws, workers=workers)
    log.info("Report (every result in one HTML file: open it in a browser): %s", report)
    return 0


def prepare_cohort(cohort: Path, ws: Workspace, cases: int, workers: int, seed: int, hours: float) -> Path:
    """Steps 1-4: synthesize (or reuse), check, plan and preprocess the demo cohort; the preprocessed folder."""

    _step(1, f"synthesize {cases} cases at 2 mm into {cohort}")
    if (cohort / "groundtruth" / "generator.json").is_file():
        log.info("   already there from an earlier run; reusing it (delete the folder to start over)")
    else:
        options = SynthOptions(num_cases=cases, num_test_cases=DEMO_TEST_CASES, seed=seed, spacing=(2.0, 2.0, 2.0),
                               kspace_slices=8)
        summary = synthesize_atomically(cohort, options, workers=workers)
        for key, value in summary.items():
            log.info("   %-28s %s", key, value)

    _step(2, "check the cohort")
    problems = check_cohort(cohort, workers=workers)
    errors = [p for p in problems if p.severity == "error"]
    log.info("   %d error(s), %d warning(s)", len(errors), len(problems) - len(errors))
    if errors:
        raise AutopipeError(f"the demo cohort failed its check ({len(errors)} errors)", where=str(cohort),
                            fix="run `autopipe check` on it to see them; this is a bug in autopipe")

    _step(3, f"fingerprint and plan, for {hours * 60:g} minutes of training per configuration on this machine")
    result = plan_dataset(cohort, ws, workers=workers, hours=hours)
    log.info("%s", result["summary"])

    _step(4, "preprocess: skull strip, N4, register to MNI152, resample, normalize (finished cases are kept)")
    pre = preprocess_dataset(cohort, ws, workers=workers)
    log.info("%s", pre.table)
    if pre.failed or pre.implausible:
        reasons = {**pre.failed, **{c: "; ".join(checks.values()) for c, checks in pre.implausible.items()}}
        listing = "; ".join(f"{case}: {why}" for case, why in reasons.items())
        raise AutopipeError(f"{len(reasons)} demo case(s) failed to preprocess ({listing})",
                            where=str(pre.folder), fix="this is a bug in autopipe; please report it")
    return pre.folder


def predict_new_cases(cohort: Path, ws: Workspace, plans, predictions: Path, workers: int) -> None:
    """Step 8: `predict` on the test images, and on the k-space file of a case fold 0 never trained on."""

    device = choose_device("cpu")
    result = predict_folder(cohort / "imagesTs", predictions, cohort, ws, device=device, mirror=False,
                            workers=workers)
    masks = [p for p in result.written if p.suffix != ".csv"]
    log.info("   %d case(s) segmented with %s -> %s", len(masks), result.configuration, predictions)
    for case, p in sorted(result.hand_function.items()):
        log.info("   %s: probability of impaired hand function %.2f (%s)", case, p,
                 predictions / "hand_function.csv")
    held_out = load_splits(ws.plans_dir(DEMO_DATASET) / "splits_final.json")[0]["val"][0]
    new_kspace = predictions.parent / "new_kspace"
    new_kspace.mkdir(exist_ok=True)
    shutil.copy2(cohort / "kspace" / f"{held_out}.h5", new_kspace / f"{held_out}.h5")
    result = predict_kspace_folder(new_kspace, predictions, plans, ws, device=device)
    log.info("   %s.h5 reconstructed and segmented with %s -> %s", held_out, result.approach,
             ", ".join(p.name for p in result.written))


def train_hand_function(cohort: Path, ws: Workspace, plans) -> None:
    """Step 8: folds 1-4 of the predictor's U-Net (briefly), the joint U-Net of fold 0, every fold's logistic
    regression (trained with the last fold), and the pooled report."""

    configuration = plans.hand_function.configuration
    for fold in ("1", "2", "3", "4"):
        train_demo_fold(cohort, ws, [configuration, "hand_function"], epochs=DEMO_HAND_EPOCHS, fold=fold)
    if plans.joint is not None:
        train_demo_fold(cohort, ws, [planned_joint_name(plans)], epochs=DEMO_HAND_EPOCHS)
    summary = evaluate_hand_function(cohort, ws, DEMO_DATASET)
    if summary is not None:
        log.info("%s", summary["text"])


def train_demo_fold(cohort: Path, ws: Workspace, models: list[str], epochs: int | None = None,
                    fold: str = "0") -> None:
    """`autopipe train FOLD -c MODELS --continue`, without mirroring in validation (8x faster on a CPU)."""
    device = choose_device(None)
    cores = default_workers()
    set_threads(cores)
    options = TrainOptions(models=models, epochs=epochs, resume=True, mirror=False,
                           loader_workers=default_loader_workers(device.type, cores))
    train_fold(cohort, ws, fold, options, device, Ranks())


def _step(number: int, text: str) -> None:
    log.info("\n[%d] %s", number, text)
