"""`autopipe plan`: fingerprint a cohort, plan every component, make the folds, write the three files.

Reads the cohort read-only and writes plans/<cohort folder>/{fingerprint,plans,splits_final}.json,
each atomically. `build_plans` is the pure part: fingerprint + hardware + budget -> Plans.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from autopipe.cohort.clinical import read_clinical_rows
from autopipe.cohort.dataset import DatasetSpec, load_dataset, training_case_ids
from autopipe.errors import AutopipeError
from autopipe.executor import Workers
from autopipe.files import to_plain, write_text_atomic
from autopipe.paths import Workspace
from autopipe.plan.configs import BudgetPlan, HardwarePlan, Plans, PreprocessingPlan
from autopipe.plan.fingerprint import fingerprint_dataset
from autopipe.plan.hardware import CALIBRATION_FILE, resolve_hardware
from autopipe.plan.models import plan_hand_function, plan_joint, plan_multitask, plan_reconstruction
from autopipe.plan.plan_set import recover, write_set
from autopipe.plan.plans_file import dumps_plans, format_json
from autopipe.plan.preprocessing import plan_preprocessing
from autopipe.plan.segmentation import fullres_spacing, plan_segmentation, planned_spacing
from autopipe.plan.splits import make_splits
from autopipe.plan.time_budget import default_budget
from autopipe.templates import brain_extent_mm

log = logging.getLogger(__name__)

PATIENT_COLUMNS = ("patient_id", "patient", "subject_id", "subject")
NUM_CLASSES = 2  # background and lesion, after the lesion labels are binarized


def plan_dataset(root: Path, workspace: Workspace, *, device: str | None = None, memory_gb: float | None = None,
                 hours: float | None = None, workers: Workers = 1, progress: bool = True,
                 throughput_gflops: float | None = None, recalibrate: bool = False) -> dict:
    """Plan the cohort at `root`; returns the paths written and a summary for the CLI to print. The device's speed
    is measured once per machine and workspace (autopipe.plan.hardware), so a busy moment never changes a plan."""
    spec = load_dataset(root)
    out_dir = workspace.plans_dir(spec.name)
    if out_dir.resolve().is_relative_to(spec.root.resolve()):
        raise AutopipeError(f"plans folder {out_dir} lies inside the cohort", where=str(spec.root),
                            fix="autopipe never writes into raw data: choose another --plans-dir")
    if hours is not None and hours <= 0:
        raise AutopipeError(f"--hours must be positive, got {hours}")
    recover(out_dir)
    case_ids = training_case_ids(spec)
    fingerprint = fingerprint_dataset(spec, case_ids, workers=workers, progress=progress)
    hardware = resolve_hardware(device, memory_gb, throughput_gflops, calibration=workspace.plans / CALIBRATION_FILE,
                                recalibrate=recalibrate)
    plans = build_plans(fingerprint, hardware, default_budget(hardware.device, hours))
    clinical = fingerprint["clinical"]
    splits, how = make_splits(case_ids, clinical["labels"] if clinical else None, patient_ids(spec))
    splits, how = keep_existing_splits(out_dir / "splits_final.json", splits, how)
    keep_previous_plans(out_dir / "plans.json", dumps_plans(plans))
    written = write_set(out_dir, {"fingerprint.json": format_json(to_plain(fingerprint)) + "\n",
                                  "plans.json": dumps_plans(plans),
                                  "splits_final.json": json.dumps(splits, indent=2) + "\n"})
    paths = {"fingerprint": written["fingerprint.json"], "plans": written["plans.json"],
             "splits": written["splits_final.json"]}
    return {**paths, "summary": summarize(plans, fingerprint, how, out_dir)}


def keep_existing_splits(path: Path, splits: list[dict], how: str) -> tuple[list[dict], str]:
    """Folds never move under a trained model: existing splits over the same cases are kept as they are."""
    if not path.is_file():
        return splits, how
    try:
        existing = json.loads(path.read_text())
        same_cases = sorted(c for fold in existing for c in fold["val"]) == sorted(c for f in splits for c in f["val"])
    except (json.JSONDecodeError, KeyError, TypeError):
        same_cases = False
    if same_cases:
        return existing, f"kept the existing {len(existing)} folds of {path.name} (same cases)"
    log.warning("the cases changed since %s was written: new folds replace it; models trained on the old "
                "folds must be retrained", path)
    return splits, how


def keep_previous_plans(path: Path, new_text: str) -> None:
    """Re-planning replaces plans.json; a version that differs (perhaps edited by hand) is kept beside it."""
    if path.is_file() and path.read_text() != new_text:
        backup = path.with_name("plans.previous.json")
        write_text_atomic(backup, path.read_text())
        log.warning("plans.json changed; the previous version (with any edits you made) is in %s", backup)


def build_plans(fingerprint: dict, hardware: HardwarePlan, budget: BudgetPlan) -> Plans:
    """Every component's plan from a fingerprint (pure)."""
    lesion_labels = tuple(fingerprint["lesion_labels"])
    if not lesion_labels:
        raise AutopipeError("dataset.json declares no foreground label", fix='add one, e.g. "lesion": 1')
    geometry = fingerprint["geometry"]
    spacings, shapes = np.array(geometry["spacing_ras"]), np.array(geometry["shape_after_crop_ras"])
    target, target_reason = fullres_spacing(spacings, shapes)  # decided once: preprocessing and segmentation read it
    channels = {int(k): v for k, v in fingerprint["channel_names"].items()}
    preprocessing = plan_preprocessing(channels, fingerprint["anatomy"], planned_spacing(target), lesion_labels,
                                       fingerprint["labels"], geometry["median_crop_ratio"])  # decides the space
    segmentation = plan_segmentation(spacings, shapes, len(fingerprint["channel_names"]), NUM_CLASSES, hardware,
                                     budget, training_extent(preprocessing), target=(target, target_reason))
    hand = plan_hand_function(fingerprint["clinical"], list(segmentation.configurations))
    multitask = plan_multitask(fingerprint["kspace"], True, hardware, budget, fingerprint["labels"], lesion_labels)
    return Plans(
        dataset=fingerprint["dataset"],
        hardware=hardware,
        budget=budget,
        transpose_forward=segmentation.transpose_forward,
        configurations=segmentation.configurations,
        preprocessing=preprocessing,
        reconstruction=plan_reconstruction(fingerprint["kspace"], hardware, budget,
                                           like_multitask=multitask is not None),
        multitask=multitask,
        hand_function=hand,
        joint=plan_joint(hand),
        reasons={"transpose_forward": segmentation.reasons["transpose_forward"]},
    )


def training_extent(preprocessing: PreprocessingPlan) -> tuple[np.ndarray, str] | None:
    """What the network will see, in mm, when preprocessing registers cases to the template: the template's
    brain box plus the crop margin (the same for every case). None in native space: the cases' own extent."""
    if preprocessing.space != "template":
        return None
    margin = preprocessing.crop_margin_mm
    extent = brain_extent_mm(preprocessing.template) + 2 * margin
    return extent, (f"the template's brain box ({' x '.join(f'{e:.0f}' for e in extent - 2 * margin)} mm) plus "
                    f"{margin:g} mm each side, at the target spacing: cases are registered to it and cropped to "
                    "the brain")


def patient_ids(spec: DatasetSpec) -> dict[str, str] | None:
    """Case -> patient from dataset.json's "patients" or a patient/subject column of the clinical table."""
    given = spec.raw.get("patients")
    if isinstance(given, dict):
        return {str(k): str(v) for k, v in given.items()}
    path = spec.clinical_path()
    if path is None or not path.is_file():
        return None
    header, rows = read_clinical_rows(path)
    column = next((c for c in PATIENT_COLUMNS if c in header), None)
    if column is None:
        return None
    case_column = spec.clinical.case_column
    return {row[case_column]: row[column] for row in rows if row.get(column) and row.get(case_column)}


def summarize(plans: Plans, fingerprint: dict, splits_how: str, out_dir: Path) -> str:
    """A few lines for the terminal: what was chosen and how long training will take."""
    hw, budget = plans.hardware, plans.budget
    anatomy = fingerprint["anatomy"]
    hours = "nnU-Net's full schedule" if budget.hours_per_fold is None else f"{budget.hours_per_fold:g} h"
    channels = ", ".join(fingerprint["channel_names"].values())
    lines = [
        f"{plans.dataset}: {fingerprint['num_cases']} cases, channels {channels}; whole brain in view "
        f"{anatomy['whole_brain_cases']}/{anatomy['cases']}, heads with skull {len(anatomy['needs_strip_cases'])}, "
        f"already stripped {len(anatomy['stripped_cases'])}",
        f"preprocessing: skull strip {plans.preprocessing.skull_strip}, {plans.preprocessing.space} space, "
        f"bias field {'/'.join(plans.preprocessing.bias_field)}",
        f"device {hw.device}, memory target {hw.memory_gb:g} GB, {hw.throughput_gflops:g} GFLOP/s; "
        f"budget {hours} per configuration and fold",
    ]
    for name, c in plans.configurations.items():
        lines.append(f"  {name:<10} patch {'x'.join(map(str, c.patch_size))}, batch {c.batch_size}, features "
                     f"{c.features_per_stage[0]}-{c.features_per_stage[-1]}, {c.n_stages} stages, {c.epochs} epochs x "
                     f"{c.iterations_per_epoch} it, ~{c.seconds_per_iteration:.2g} s/it, "
                     f"~{c.training_hours:.2g} h per fold")
    if plans.reconstruction:
        r = plans.reconstruction
        lines.append(f"  reconstruction: CIRIM {r.cascades} cascades x {r.time_steps} steps x {r.hidden_channels} "
                     f"channels, {r.acceleration:g}x {r.mask_type}, {r.epochs} epochs")
    if plans.multitask:
        m = plans.multitask
        lines.append(f"  multitask: MTLRS {m.cascades} cascades, {m.epochs} epochs; compared with "
                     f"{', '.join(a for a in m.approaches if a != 'mtlrs')}")
    if plans.hand_function:
        lines.append(f"  hand function: logistic regression, class weights {plans.hand_function.class_weight}")
    lines.append(f"  splits: {splits_how}")
    lines.append(f"wrote {out_dir}/fingerprint.json, plans.json, splits_final.json")
    return "\n".join(lines)
