"""`autopipe predict -i IN -o OUT`: new patients' scans -> lesion masks on those same scans.

Each case in IN (CASE_0000.nii.gz, CASE_0001.nii.gz, ... as in imagesTr) goes through the cohort's
preprocessing plan into a scratch folder inside OUT, through the ensemble of every trained fold of the
chosen configuration, back onto its own grid, and out as OUT/CASE.nii.gz with the input file's header
(uint8 0/1); OUT/CASE_probability.nii.gz (float32) on request. OUT/lesions.tsv (with its column sidecar
lesions.json) counts and measures every case's lesions (autopipe.predict.lesion_table); on request the masks
also go out as a BIDS derivative dataset (`--bids DIR`, autopipe.predict.bids_derivatives) and as DICOM
Segmentation objects referencing the imported series (`--dicom-seg`, autopipe.predict.dicom_seg). Where
hand-function predictors are trained, OUT/hand_function.csv gives each subject's probability of impaired hand
function. Small components are removed only when cross-validation chose to
(results/DATASET/CONFIGURATION/crossval/postprocessing.json). IN is only read.
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from autopipe.cohort.dataset import CHANNEL_FILE, DatasetSpec, load_dataset
from autopipe.cohort.image_io import SUPPORTED_ENDINGS, file_ending, read_volume
from autopipe.errors import AutopipeError
from autopipe.executor import Workers, is_cluster, parallel_map
from autopipe.files import number, read_json
from autopipe.layout import (
    ENSEMBLE,
    POSTPROCESSING_FILE,
    SUMMARY_FILE,
    best_configuration,
    case_paths,
    crossval_dir,
    members,
)
from autopipe.paths import Workspace
from autopipe.plan.plans_file import Plans, load_plans
from autopipe.predict.bids_derivatives import bids_entities, provenance, write_case, write_dataset_description
from autopipe.predict.case_inference import HandSource, InferenceJob, lost_inference, predict_case
from autopipe.predict.dicom_seg import SEG_SUFFIX, source_files, write_dicom_seg
from autopipe.predict.hand_function import CSV_FILE as HAND_CSV
from autopipe.predict.hand_function import load_hand_predictors, write_hand_csv
from autopipe.predict.import_sources import find_import_sources
from autopipe.predict.lesion_table import lesion_table_row, write_lesion_table
from autopipe.predict.models import TrainedModel, shared_ensemble, trained_folds
from autopipe.predict.scan_contrast import TrainingContrast, training_contrast
from autopipe.preprocess.acceptance import failed_checks
from autopipe.preprocess.case import CaseJob
from autopipe.preprocess.runner import GB_PER_WORKER, ct_statistics, lost_job, run_job
from autopipe.preprocess.storage import plan_digest

log = logging.getLogger(__name__)

SCRATCH = ".autopipe_preprocessing"


@dataclass(frozen=True)
class Predictions:
    """What `predict_folder` wrote (masks, probabilities, hand_function.csv), which cases failed and why, with
    what, each subject's P(impaired), and the other outputs: lesions.tsv/.json, BIDS derivatives, DICOM SEGs."""

    written: list[Path]
    failed: dict[str, str]
    configuration: str
    folds: list[str]
    hand_function: dict[str, float]
    derived: list[Path] = field(default_factory=list)


def input_cases(folder: Path, num_channels: int) -> dict[str, tuple[Path, ...]]:
    """CASE -> its channel files (CASE_0000.ext, ...) in `folder`; AutopipeError for anything incomplete."""
    if not folder.is_dir():
        raise AutopipeError("input folder not found", where=str(folder),
                            fix="give -i a folder of CASE_0000.nii.gz files")
    found: dict[str, dict[int, Path]] = {}
    for path in sorted(folder.iterdir()):
        ending = file_ending(path)
        match = CHANNEL_FILE.match(path.name[: -len(ending)]) if ending in SUPPORTED_ENDINGS else None
        if match:
            found.setdefault(match["case"], {})[int(match["channel"])] = path
    if not found:
        raise AutopipeError("no images named CASE_0000.nii.gz (CASE_XXXX with a 4-digit channel) found",
                            where=str(folder), fix="name new cases as in imagesTr: one file per channel")
    incomplete = {c: sorted(ch) for c, ch in found.items() if sorted(ch) != list(range(num_channels))}
    if incomplete:
        listed = "; ".join(f"{c} has channels {ch}" for c, ch in list(incomplete.items())[:5])
        raise AutopipeError(f"the plan needs channels 0-{num_channels - 1} for every case: {listed}",
                            where=str(folder), fix="add the missing channel files (CASE_0001.nii.gz, ...)")
    return {c: tuple(ch[i] for i in range(num_channels)) for c, ch in found.items()}


def choose_configuration(workspace: Workspace, dataset: str, requested: str | None,
                         planned: list[str] | None = None) -> str:
    """The requested configuration (any trained one, a joint U-Net too, or the ensemble), else the one
    `autopipe evaluate` chose on the cross-validation (best_configuration.json), else the best of the `planned`
    ones by cross-validation Dice, else 3d_fullres, else any trained."""
    root = workspace.results / dataset
    trained = sorted(d.name for d in root.glob("*") if d.is_dir() and trained_folds(d))
    if requested:
        if not set(members(requested)) <= set(trained):
            raise AutopipeError(f"configuration {requested} has no trained fold",
                                fix=f"train it, or choose one of: {', '.join(trained) or 'none trained yet'}")
        return requested
    decision = _decision(workspace, dataset)
    if decision is not None and set(members(decision["chosen"])) <= set(trained):
        log.info("configuration %s, as cross-validation chose: %s", decision["chosen"], decision["reason"])
        return decision["chosen"]
    trained = [name for name in trained if planned is None or name in planned]
    if not trained:
        raise AutopipeError(f"no trained model for {dataset} in {root}", fix="run `autopipe train FOLD` first")
    scores = {}
    for name in trained:
        summary = crossval_dir(root / name) / SUMMARY_FILE
        if summary.is_file() and math.isfinite(dice := number(read_json(summary)["pooled"]["dice"]["mean"])):
            scores[name] = dice
    if scores:
        best = max(scores, key=scores.get)
        log.info("configuration %s: best cross-validation Dice (%s)", best,
                 ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
        return best
    return "3d_fullres" if "3d_fullres" in trained else trained[0]


def min_lesion_volume(workspace: Workspace, dataset: str, name: str) -> float:
    """Postprocessing chosen by cross-validation for configuration (or ensemble) `name`: 0 (none) when no decision
    was made."""
    decision = _decision(workspace, dataset)
    if decision is not None and decision["chosen"] == name:
        return number(decision["postprocessing"]["min_lesion_volume_mm3"])
    path = crossval_dir(workspace.results / dataset / name) / POSTPROCESSING_FILE
    if name == ENSEMBLE or not path.is_file():
        return 0.0
    return number(read_json(path)["min_lesion_volume_mm3"])


def _decision(workspace: Workspace, dataset: str) -> dict | None:
    path = best_configuration(workspace, dataset)
    return read_json(path) if path.is_file() else None


def load_members(workspace: Workspace, dataset: str, name: str, folds: list[str] | None,
                 device: torch.device) -> dict[str, list[TrainedModel]]:
    """Configuration -> its trained folds (those named in `folds`, else all), for `name` or the ensemble's members."""
    loaded = {}
    for member in members(name):
        config_dir = workspace.results / dataset / member
        paths = [p for p in trained_folds(config_dir) if folds is None or p.parent.name.removeprefix("fold_") in folds]
        if not paths:
            raise AutopipeError(f"none of the folds {', '.join(folds or [])} of {member} is trained",
                                where=str(config_dir), fix="train them, or leave --folds out to use every trained fold")
        loaded[member] = shared_ensemble(paths, device)
    return loaded


def predict_folder(input_dir: Path, output_dir: Path, root: Path, workspace: Workspace, *,
                   configuration: str | None = None, folds: list[str] | None = None, device: torch.device,
                   mirror: bool = True, probabilities: bool = False, workers: Workers = 1,
                   progress: bool = True, accept_implausible: bool = False, bids_dir: Path | None = None,
                   dicom_seg: bool = False) -> Predictions:
    """Predict every case in `input_dir` into `output_dir`; failures are logged with their reasons and returned.
    `bids_dir` also writes a BIDS derivative dataset there (it may be `output_dir`); `dicom_seg` also writes
    OUT/CASE_seg.dcm for cases imported from DICOM (checked for every case before anything is predicted)."""
    input_dir, output_dir = input_dir.expanduser().resolve(), output_dir.expanduser().resolve()
    bids_dir = bids_dir.expanduser().resolve() if bids_dir is not None else None
    for folder, option in ((output_dir, "-o"), (bids_dir, "--bids")):
        if folder is not None and (folder == input_dir or folder.is_relative_to(input_dir)):
            raise AutopipeError("the output folder lies inside the input folder", where=str(folder),
                                fix=f"choose another {option}: autopipe never writes next to your scans")
    spec = load_dataset(root)
    plans = load_plans(workspace.plans_dir(spec.name) / "plans.json")
    name = choose_configuration(workspace, spec.name, configuration, list(plans.configurations))
    cases = input_cases(input_dir, plans.preprocessing.num_channels)
    sources = find_import_sources(input_dir) if bids_dir is not None or dicom_seg else None
    entities = bids_entities(list(cases), sources) if bids_dir is not None else {}
    dicom_files = {case: source_files(case, sources) for case in cases} if dicom_seg else {}
    loaded = load_members(workspace, spec.name, name, folds, device)
    fold_names = [m.fold for m in next(iter(loaded.values()))]
    models = [model for member in loaded.values() for model in member]
    min_mm3 = min_lesion_volume(workspace, spec.name, name)
    log.info("predicting %d case(s) with %s, %d fold(s)%s%s", len(cases), name, len(models),
             ", mirrored" if mirror else "", f", removing lesions < {min_mm3:g} mm3" if min_mm3 else "")
    scratch = output_dir / SCRATCH
    shutil.rmtree(scratch, ignore_errors=True)  # a killed run's cases may be of other scans with the same names
    digest = plan_digest(plans.preprocessing)
    ct_stats = ct_statistics(workspace, spec, plans.preprocessing)
    jobs = {c: CaseJob(case_id=c, images=images, label=None, out_dir=scratch, plan=plans.preprocessing,
                       digest=digest, ct_stats=ct_stats, qc=False) for c, images in cases.items()}
    outcomes = parallel_map(run_job, list(jobs.values()), workers, "preprocess", enabled=progress,
                            memory_gb=GB_PER_WORKER, lost=lost_job)
    written, failed = [], {o.case_id: o.error for o in outcomes if o.error}
    failed |= _refused(outcomes, _training_reference(workspace, spec, plans), accept_implausible)
    hand = _hand_setup(workspace, spec.name, loaded, device)
    hand_source = None if hand is None else HandSource(workspace, spec.name, hand[0], tuple(m.source for m in hand[1]))
    checkpoints = {member: tuple(m.source for m in models) for member, models in loaded.items()}
    tasks = []
    for outcome in (o for o in outcomes if o.case_id not in failed):
        job = jobs[outcome.case_id]
        ending = file_ending(job.images[0])
        tasks.append(InferenceJob(
            case_id=job.case_id, arrays=case_paths(scratch, job.case_id)[0], properties=outcome.properties,
            source=job.images[0], mask=output_dir / f"{job.case_id}{ending}",
            probability=output_dir / f"{job.case_id}_probability{ending}" if probabilities else
            scratch / f"{job.case_id}_probability{ending}" if bids_dir is not None else None,  # BIDS needs it
            scratch=scratch, min_mm3=min_mm3, checkpoints=checkpoints, mirror=mirror,
            device=None if is_cluster(workers) else str(device),
            hand=hand_source))
    # the models are loaded here already: in this process the cases go one by one; a cluster's workers load their
    # own, each on its best device (a worker per GPU)
    results = parallel_map(predict_case, tasks, workers if is_cluster(workers) else 1, "predict", enabled=progress,
                           memory_gb=GB_PER_WORKER, lost=lost_inference)
    scores: dict[str, float] = {}
    lesions: dict[str, dict] = {}
    derived: list[Path] = []
    for task, result in zip(tasks, results, strict=True):
        if result.error:
            failed[task.case_id] = result.error
            continue
        written.extend(p for p in result.written if not p.is_relative_to(scratch))
        mask = read_volume(task.mask)
        lesions[task.case_id] = lesion_table_row(mask.data, mask.affine)
        if bids_dir is not None:
            derived.extend(write_case(bids_dir, entities[task.case_id], task.mask, task.probability,
                                      list(jobs[task.case_id].images), input_dir, provenance(name, fold_names, digest)))
        if dicom_seg:
            try:
                derived.append(write_dicom_seg(output_dir / f"{task.case_id}{SEG_SUFFIX}", mask.data, mask.affine,
                                               dicom_files[task.case_id], task.case_id, name))
            except AutopipeError as exc:
                failed[task.case_id] = f"no DICOM segmentation: {exc}"
        if result.hand_score is not None:
            scores[task.case_id] = result.hand_score
    shutil.rmtree(scratch, ignore_errors=True)
    if lesions:
        derived.extend(write_lesion_table(output_dir, lesions))
    if bids_dir is not None:
        derived.extend(write_dataset_description(bids_dir, input_dir, name, fold_names, digest))
    if scores:
        predictors = hand[1]
        written.append(write_hand_csv(output_dir / HAND_CSV, scores, [p.fold for p in predictors],
                                      predictors[0].configuration))
    for case_id, why in failed.items():
        log.error("%s: %s", case_id, why)
    return Predictions(written, failed, name, fold_names, scores, derived)


def _training_reference(workspace: Workspace, spec: DatasetSpec, plans: Plans) -> TrainingContrast:
    """The training scans' tissue contrast, with a warning when it cannot be compared."""
    reference = training_contrast(workspace, spec.name, plans.preprocessing,
                                  workspace.plans_dir(spec.name) / "splits_final.json",
                                  [spec.channel_names[k] for k in sorted(spec.channel_names)])
    if reference.missing_because:
        log.warning("the scans' tissue contrast is not compared with the training scans': %s",
                    reference.missing_because)
    return reference


def _refused(outcomes: list, reference: TrainingContrast, accept_implausible: bool) -> dict[str, str]:
    """case -> why it is not predicted: a failed plausibility check, or the tissue contrast of another sequence than
    the training scans' (unless accepted: then a warning). Contrast flags are warnings."""
    refused = {}
    for outcome in outcomes:
        contrast = [] if outcome.properties is None else reference.findings(outcome.properties)
        for flag in (f.message for f in contrast if f.severity == "flag"):
            log.warning("%s: %s", outcome.case_id, flag)
        checks = failed_checks(outcome.properties) | {f.check: f.message for f in contrast if f.severity == "fail"}
        if checks and not accept_implausible:
            refused[outcome.case_id] = (f"{_refusal(checks)}: {'; '.join(checks.values())} "
                                        "(to predict it anyway, add --accept-implausible)")
        elif checks:
            log.warning("%s: predicted although it failed a check: %s", outcome.case_id, "; ".join(checks.values()))
    return refused


def _refusal(checks: dict[str, str]) -> str:
    if set(checks) == {"contrast"}:
        return "not the kind of scan the models were trained on"
    return "preprocessing gave an implausible result"


def _hand_setup(workspace: Workspace, dataset: str, loaded: dict[str, list[TrainedModel]], device: torch.device
                ) -> tuple[str, list[TrainedModel], list] | None:
    """(configuration, its segmentation folds, the hand-function predictors): the predictors' features need the
    configuration they were trained on, which may differ from the one chosen for the masks; None if untrained."""
    predictors = load_hand_predictors(workspace, dataset)
    if not predictors:
        return None
    configuration = predictors[0].configuration
    if configuration in loaded:
        return configuration, loaded[configuration], predictors
    hand_paths = trained_folds(workspace.results / dataset / configuration)
    if not hand_paths:
        log.warning("hand function not predicted: its configuration %s has no trained fold", configuration)
        return None
    log.info("hand function from %s segmentations, as its predictors were trained", configuration)
    return configuration, shared_ensemble(hand_paths, device), predictors
