"""`autopipe predict` on k-space files: reconstruct and segment new acquisitions, written as NIfTI.

For every CASE.h5 in the input folder (the cohort's k-space layout, undersampled or fully sampled with a
mask), the file is prepared as in preprocessing (coil maps from its calibration region, scaling), then
the chosen approach of every trained fold runs slice by slice; the folds' complex images and lesion
probabilities are averaged. Outputs, in the raw file's intensity units:

    CASE_reconstruction.nii.gz    magnitude image of the slab, float32
    CASE_lesions.nii.gz           1 where the most probable class is a lesion class, uint8
    CASE_classes.nii.gz           where the models segment tissue too: the most probable class, uint8, as
                                  its position in plans.multitask.segmentation_classes

Geometry: the file's `affine` attribute (the image volume's), restricted to the slab's slices along
`slice_axis`; without one, the image CASE_0000.nii.gz beside it, else 1 mm voxels at the origin (a
warning says so). The raw file is only read.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from autopipe.cohort.kspace_file import read_kspace_header
from autopipe.errors import AutopipeError
from autopipe.files import atomic_path, number, read_json
from autopipe.layout import SUMMARY_FILE, comparison_dir, slice_model_dir
from autopipe.models.slice_models import APPROACH_MODELS
from autopipe.paths import Workspace
from autopipe.plan.configs import Plans
from autopipe.predict.slice_inference import available_approaches, class_map, load_fold_models, run_approach
from autopipe.preprocess.kspace_prep import prepare_kspace_case
from autopipe.preprocess.kspace_slices import SliceRef, load_slice
from autopipe.progress import Progress

log = logging.getLogger(__name__)

RECONSTRUCTION_SUFFIX = "_reconstruction.nii.gz"
LESIONS_SUFFIX = "_lesions.nii.gz"
CLASSES_SUFFIX = "_classes.nii.gz"


def slab_affine(affine: np.ndarray, axis: int, indices: np.ndarray) -> np.ndarray:
    """The image's voxel -> world affine for an array whose `axis` runs over `indices` (evenly spaced)."""
    indices = np.asarray(indices, np.int64)
    step = int(indices[1] - indices[0]) if len(indices) > 1 else 1
    if len(indices) > 1 and not np.all(np.diff(indices) == step):
        raise ValueError(f"slice_indices {indices.tolist()} are not evenly spaced; NIfTI needs a regular grid")
    out = np.array(affine, np.float64)
    out[:3, 3] = affine[:3, 3] + affine[:3, axis] * indices[0]
    out[:3, axis] = affine[:3, axis] * step
    return out


def slab_volume(slices: np.ndarray, axis: int) -> np.ndarray:
    """Slices [S, H, W] back into the image's axis order: S along `axis`, H and W the remaining axes."""
    return np.moveaxis(slices, 0, axis)


@dataclass(frozen=True)
class KspacePredictions:
    """What `predict_kspace_folder` wrote with which approach and folds, and the cases that failed."""

    approach: str
    folds: list[str]
    written: list[Path]
    failed: list[str]


def choose_approach(plans: Plans, workspace: Workspace, requested: str | None, trained: list[str]) -> str:
    """The requested approach, else the best per-lesion Dice of the comparison, else mtlrs, else any trained."""
    if requested is not None:
        if requested not in trained:
            raise AutopipeError(f"approach {requested} has no trained fold",
                                fix=f"train it (`autopipe train FOLD`), or choose from {', '.join(trained) or 'none'}")
        return requested
    if not trained:
        raise AutopipeError("no reconstruction approach is trained for this cohort",
                            fix="run `autopipe train FOLD` for at least one fold first")
    summary = comparison_dir(workspace, plans.dataset) / SUMMARY_FILE
    if summary.is_file():
        methods = read_json(summary)["methods"]
        scores = {a: number(methods[a]["per_lesion_dice"]["mean"]) for a in trained
                  if "per_lesion_dice" in methods.get(a, {})}
        scored = [a for a, v in scores.items() if math.isfinite(v)]
        if scored:
            return max(scored, key=scores.get)
    return "mtlrs" if "mtlrs" in trained else trained[0]


def predict_kspace_folder(input_dir: Path, output_dir: Path, plans: Plans, workspace: Workspace, *,
                          approach: str | None = None, folds: list[str] | None = None,
                          device: torch.device | None = None, progress: bool = True) -> KspacePredictions:
    """Reconstruct and segment every *.h5 in input_dir; failures are logged with their reasons and returned."""
    device = device or torch.device("cpu")
    files = sorted(Path(input_dir).glob("*.h5"))
    if not files:
        raise AutopipeError("no k-space files (*.h5) in the input folder", where=str(input_dir),
                            fix="put the acquisitions there as CASE.h5 (the cohort's k-space layout)")
    if plans.multitask is None:
        raise AutopipeError("the plan has no reconstruction + segmentation models (no k-space or no labels)",
                            fix="plan a cohort with k-space files and lesion labels")
    fold_models = {}
    for fold in folds or [str(k) for k in range(5)]:
        dirs = {m: slice_model_dir(workspace, plans.dataset, m, fold) for m in
                {m for a in plans.multitask.approaches for m in APPROACH_MODELS[a]}}
        trained = {m: d for m, d in dirs.items() if (d / "checkpoint_final.pt").is_file()}
        if trained:
            fold_models[fold] = trained
    ready = {a: [f for f, t in fold_models.items() if all(m in t for m in APPROACH_MODELS[a])]
             for a in plans.multitask.approaches}
    chosen = choose_approach(plans, workspace, approach, [a for a, f in ready.items() if f])
    use_folds = ready[chosen]
    models = [load_fold_models({m: fold_models[f][m] for m in APPROACH_MODELS[chosen]}, device) for f in use_folds]
    assert all(available_approaches([chosen], m) for m in models)
    output_dir.mkdir(parents=True, exist_ok=True)
    written, failed = [], []
    with tempfile.TemporaryDirectory(prefix="autopipe_kspace_") as scratch, \
            Progress(len(files), f"reconstruct + segment ({chosen})", enabled=progress) as bar:
        for path in files:
            case = path.stem
            try:
                written += _predict_one(path, Path(scratch) / path.name, output_dir, chosen, models, plans, device)
            except (AutopipeError, ValueError, KeyError, OSError) as exc:
                log.error("error: case %s (%s): %s; check the file with `autopipe check`, or leave it out", case,
                          path, exc)
                failed.append(case)
            bar.advance()
    return KspacePredictions(chosen, use_folds, written, failed)


def _predict_one(source: Path, prepared: Path, output_dir: Path, approach: str, models: list[dict],
                 plans: Plans, device: torch.device) -> list[Path]:
    import h5py
    import nibabel as nib

    header = read_kspace_header(source)
    attrs = header.attrs
    calibration = None if "calibration_size" in attrs else plans.reconstruction.calibration_size
    prepare_kspace_case(source, prepared, coil_method=plans.preprocessing.coil_maps, calibration_size=calibration)
    with h5py.File(prepared, "r") as f:
        scale, count = float(f.attrs["scale"]), f["kspace"].shape[0]
    images, probabilities = [], []
    for index in range(count):
        batch = load_slice(prepared.parent, SliceRef(prepared.stem, index), device)
        outputs = [run_approach(approach, fold_models, batch) for fold_models in models]
        images.append(torch.stack([o[0][0] for o in outputs]).mean(0).cpu().numpy())
        probabilities.append(torch.stack([o[1][0] for o in outputs]).mean(0).cpu().numpy())
    axis = int(attrs.get("slice_axis", 0))
    affine = _affine(source, attrs, axis)
    magnitude = slab_volume(np.abs(np.stack(images)) * scale, axis).astype(np.float32)
    classes = class_map(np.stack(probabilities))
    lesions = slab_volume(np.isin(classes, plans.multitask.lesion_classes), axis).astype(np.uint8)
    outputs = [(RECONSTRUCTION_SUFFIX, magnitude), (LESIONS_SUFFIX, lesions)]
    if len(plans.multitask.segmentation_classes) > 2:
        outputs.append((CLASSES_SUFFIX, slab_volume(classes, axis)))
    paths = []
    for suffix, array in outputs:
        out = output_dir / f"{source.stem}{suffix}"
        image = nib.Nifti1Image(array, affine)
        image.set_qform(affine, code=1)
        image.set_sform(affine, code=1)
        with atomic_path(out, suffix=".nii.gz") as tmp:
            nib.save(image, str(tmp))
        paths.append(out)
    return paths


def _affine(source: Path, attrs: dict, axis: int) -> np.ndarray:
    """The slab's affine from the file's `affine`, else the image beside it, else 1 mm (with a warning)."""
    import nibabel as nib

    indices = np.atleast_1d(attrs.get("slice_indices", [0]))
    if "affine" in attrs:
        return slab_affine(np.asarray(attrs["affine"], np.float64).reshape(4, 4), axis, indices)
    image = source.with_name(f"{source.stem}_0000.nii.gz")
    if image.is_file():
        return slab_affine(nib.load(image).affine, axis, indices)
    log.warning("warning: %s declares no geometry (no 'affine' attribute, no %s beside it); written with 1 mm "
                "voxels at the origin", source.name, image.name)
    return np.eye(4)
