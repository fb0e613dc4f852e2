"""Where every output lives under preprocessed/ and results/: one module, so no stage spells another's paths.

    preprocessed/DATASET/IDENTIFIER/              preprocessed_dir; IDENTIFIER = data_identifier(space, spacing)
        CASE.h5, CASE.json                        case_paths: arrays (preprocess.storage), properties (.properties)
    preprocessed/DATASET/kspace/CASE.h5           kspace_dir, kspace_file: prepared k-space slices

    results/DATASET/CONFIGURATION/fold_K/         fold_dir: a segmentation U-Net (fold_all: trained on every case)
        validation/CASE.nii.gz                    validation_dir: held-out cases on their scans, summary.json
        validation/probabilities/CASE.npz         validation_probability: their lesion probability (float16)
        validation/template_space/CASE.nii.gz     template_space_prediction: the same on the template grid
        hand_function.json                        joint_result: a joint U-Net's held-out hand function
    results/DATASET/CONFIGURATION/crossval/       crossval_dir: summary.json, postprocessing.json
    results/DATASET/reconstruction/MODEL/fold_K/  slice_model_dir: a k-space model (cs/fold_K/cs.json: CS weight)
    results/DATASET/reconstruction/comparison/    comparison_dir: fold_K.json, summary.json
    results/DATASET/hand_function/fold_K/         hand_dir: predictor.json, held_out.json (summary.json above)
    results/DATASET/best_configuration.json       best_configuration: the configuration predict uses, and why

Inside a model's folder, checkpoints are named by autopipe.models.checkpoint.checkpoint_path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from autopipe.paths import Workspace

RECONSTRUCTION_FOLDER = "reconstruction"
COMPARISON_FOLDER = "comparison"
CS = "cs"  # the compressed-sensing baseline's folder beside the k-space models
CS_FILE = "cs.json"
HAND_FOLDER = "hand_function"
PREDICTOR_FILE = "predictor.json"
HELD_OUT_FILE = "held_out.json"
JOINT_PREFIX = "joint_"
JOINT_RESULT_FILE = "hand_function.json"
POSTPROCESSING_FILE = "postprocessing.json"
SUMMARY_FILE = "summary.json"


# --- preprocessed/ ----------------------------------------------------------------------------------------

def data_identifier(space: str, spacing: Sequence[float]) -> str:
    """Folder name of a preprocessing: the space and the target spacing, e.g. 'template_2mm'."""
    values = sorted(set(spacing))
    text = "x".join(f"{s:g}" for s in spacing) if len(values) > 1 else f"{values[0]:g}"
    return f"{space}_{text}mm"


def preprocessed_dir(workspace: Workspace, dataset: str, space: str, spacing: Sequence[float]) -> Path:
    return workspace.preprocessed / dataset / data_identifier(space, spacing)


def case_paths(folder: Path, case_id: str) -> tuple[Path, Path]:
    """(arrays, properties) of a case."""
    return folder / f"{case_id}.h5", folder / f"{case_id}.json"


def kspace_dir(preprocessed_folder: Path) -> Path:
    """Where preprocessing puts the prepared k-space files: beside the image folder."""
    return preprocessed_folder.parent / "kspace"


def kspace_file(folder: Path, case: str) -> Path:
    return folder / f"{case}.h5"


# --- results/: segmentation ---------------------------------------------------------------------------------

def fold_dir(workspace: Workspace, dataset: str, configuration: str, fold: str) -> Path:
    return workspace.results / dataset / configuration / f"fold_{fold}"


def validation_dir(fold_folder: Path) -> Path:
    return fold_folder / "validation"


def validation_probability(fold_folder: Path, case_id: str) -> Path:
    """A held-out case's lesion probability on its scan (float16 .npz): what ensembles of configurations average."""
    return validation_dir(fold_folder) / "probabilities" / f"{case_id}.npz"


def template_space_prediction(fold_folder: Path, case_id: str) -> Path:
    """Where a held-out case's lesion mask on the template grid (full, uncropped) is kept."""
    return validation_dir(fold_folder) / "template_space" / f"{case_id}.nii.gz"


def crossval_dir(configuration_dir: Path) -> Path:
    return configuration_dir / "crossval"


def joint_name(configuration: str, r: float, planned_r: float) -> str:
    """joint_CONFIGURATION for the planned r, joint_CONFIGURATION_rR for another (a sweep never overwrites it)."""
    name = f"{JOINT_PREFIX}{configuration}"
    return name if math.isclose(r, planned_r) else f"{name}_r{r:g}"


def joint_result(fold_folder: Path) -> Path:
    """A joint U-Net fold's hand-function predictions of its held-out cases."""
    return fold_folder / JOINT_RESULT_FILE


# --- results/: reconstruction, hand function --------------------------------------------------------------

def slice_model_dir(workspace: Workspace, dataset: str, model: str, fold: str) -> Path:
    return workspace.results / dataset / RECONSTRUCTION_FOLDER / model / f"fold_{fold}"


def comparison_dir(workspace: Workspace, dataset: str) -> Path:
    return workspace.results / dataset / RECONSTRUCTION_FOLDER / COMPARISON_FOLDER


def hand_dir(workspace: Workspace, dataset: str, fold: str | None = None) -> Path:
    folder = workspace.results / dataset / HAND_FOLDER
    return folder if fold is None else folder / f"fold_{fold}"


ENSEMBLE_MEMBERS = ("2d", "3d_fullres")
ENSEMBLE = "ensemble_" + "+".join(ENSEMBLE_MEMBERS)  # the mean of its members' probabilities


def members(candidate: str) -> tuple[str, ...]:
    """The configurations a prediction candidate averages: itself, or the ensemble's members."""
    return ENSEMBLE_MEMBERS if candidate == ENSEMBLE else (candidate,)


def best_configuration(workspace: Workspace, dataset: str) -> Path:
    """The cross-validation decision: which configuration (or ensemble) predict uses, with its evidence."""
    return workspace.results / dataset / "best_configuration.json"
