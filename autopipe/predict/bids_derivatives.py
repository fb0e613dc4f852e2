"""`autopipe predict --bids DIR`: the predictions as a BIDS derivative dataset (BIDS 1.9.0), beside or apart from -o.

    DIR/dataset_description.json       DatasetType "derivative", GeneratedBy autopipe (version, plan digest, ...),
                                       SourceDatasets and DatasetLinks {"input": file URI of -i}
    DIR/.bidsignore                    the non-BIDS files of -o at DIR's top (CASE.nii.gz, lesions.tsv, ...),
                                       so that DIR may be -o itself
    DIR/sub-<label>[/ses-<label>]/anat/
        sub-<label>[_ses-<label>]_space-orig_desc-lesion_mask.nii.gz     uint8 0/1 lesion mask (as OUT/CASE.nii.gz)
        sub-<label>[_ses-<label>]_space-orig_label-lesion_probseg.nii.gz float32 lesion probability
        and a .json sidecar beside each

"space-orig": on the grid and in the world coordinates of the input scan itself (its exact header), not a
template. Sidecars hold only fields BIDS defines for derivatives (Description; Sources and SpatialReference as
BIDS URIs into the "input" dataset link; Type "Lesion" for the mask) plus provenance under one namespaced key,
"autopipe" (version, configuration, folds, plan digest).
Subject and session labels come from import_sources.json (`autopipe import` from BIDS records them);
otherwise sub-<case id with every non-alphanumeric character removed>, as BIDS labels are alphanumeric.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np

from autopipe import __version__
from autopipe.cohort.image_io import file_ending, read_volume
from autopipe.errors import AutopipeError
from autopipe.files import atomic_path, write_json, write_text_atomic
from autopipe.predict.export import write_like
from autopipe.predict.import_sources import ImportSources

BIDS_VERSION = "1.9.0"
DESCRIPTION_FILE = "dataset_description.json"
IGNORE_FILE = ".bidsignore"
# what `autopipe predict` writes into -o besides BIDS files, for when --bids DIR is -o: the validator skips them
NOT_BIDS = ("/*.nii.gz", "/*.nii", "/*.mha", "/*.mhd", "/*.raw", "/*.nrrd", "/*.nhdr", "/*.npz", "/*_seg.dcm",
            "/lesions.tsv", "/lesions.json", "/hand_function.csv")
INPUT_LINK = "input"  # the DatasetLinks name of the -i folder, used in the sidecars' BIDS URIs
_NOT_ALPHANUMERIC = re.compile(r"[^A-Za-z0-9]")


def bids_label(text: str) -> str:
    """`text` as a BIDS label: only its letters and digits."""
    return _NOT_ALPHANUMERIC.sub("", text)


def bids_entities(cases: list[str], sources: ImportSources | None) -> dict[str, dict[str, str]]:
    """Case -> its entities {"sub": ..., ["ses": ...]}: those `autopipe import` recorded, else sub-<case id
    without its non-alphanumeric characters. AutopipeError when a label is empty or two cases get the same."""
    entities, taken = {}, {}
    for case in sorted(cases):
        recorded = sources.bids_entities(case) if sources is not None else {}
        labels = {key: bids_label(value) for key, value in (recorded or {"sub": case}).items()}
        if not labels.get("sub") or any(not value for value in labels.values()):
            raise AutopipeError(f"case {case} has no letters or digits for a BIDS subject label",
                                where=str(sources.path) if recorded else None,
                                fix="rename the case's files (CASE_0000.nii.gz) to include letters or digits")
        key = prefix(labels)
        if key in taken:
            raise AutopipeError(f"cases {taken[key]} and {case} would both be named {key} in BIDS",
                                where=str(sources.path) if recorded else None,
                                fix="rename one of them so that their ids differ in letters or digits "
                                    "(BIDS labels drop every other character)")
        taken[key] = case
        entities[case] = labels
    return entities


def prefix(entities: dict[str, str]) -> str:
    """sub-<label>[_ses-<label>]: the start of every file name of that subject (and session)."""
    return "_".join(f"{key}-{entities[key]}" for key in ("sub", "ses") if key in entities)


def derivative_paths(bids_dir: Path, entities: dict[str, str]) -> dict[str, Path]:
    """{"mask": ..., "probseg": ...}: where a case's derivatives go."""
    folder = bids_dir / f"sub-{entities['sub']}"
    if "ses" in entities:
        folder = folder / f"ses-{entities['ses']}"
    start = folder / "anat" / prefix(entities)
    return {"mask": Path(f"{start}_space-orig_desc-lesion_mask.nii.gz"),
            "probseg": Path(f"{start}_space-orig_label-lesion_probseg.nii.gz")}


def provenance(configuration: str, folds: list[str], digest: str) -> dict:
    """What made the predictions, under the sidecars' namespaced "autopipe" key."""
    return {"Version": __version__, "Configuration": configuration, "Folds": list(folds), "PlanDigest": digest}


def write_dataset_description(bids_dir: Path, input_dir: Path, configuration: str, folds: list[str],
                              digest: str) -> list[Path]:
    """DIR/dataset_description.json of the derivative dataset and DIR/.bidsignore (each replaced if there)."""
    uri = input_dir.resolve().as_uri()
    ignore = write_text_atomic(bids_dir / IGNORE_FILE, "\n".join(NOT_BIDS) + "\n")
    return [ignore, write_json(bids_dir / DESCRIPTION_FILE, {
        "Name": "autopipe lesion segmentations",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{
            "Name": "autopipe",
            "Version": __version__,
            "Description": f"lesion segmentation with the {configuration} configuration, ensemble of fold(s) "
                           f"{', '.join(folds)}",
            "PlanDigest": digest,
        }],
        "SourceDatasets": [{"URL": uri}],
        "DatasetLinks": {INPUT_LINK: uri},
    })]


def write_case(bids_dir: Path, entities: dict[str, str], mask: Path, probability: Path, scans: list[Path],
               input_dir: Path, made_by: dict) -> list[Path]:
    """A case's mask and probability (written by export_prediction, on the scan's grid) as BIDS derivatives with
    their sidecars; `scans` are its input files (CASE_0000.nii.gz, ...) inside `input_dir`."""
    paths = derivative_paths(bids_dir, entities)
    sources = [f"bids:{INPUT_LINK}:{scan.resolve().relative_to(input_dir.resolve()).as_posix()}" for scan in scans]
    common = {"Sources": sources, "SpatialReference": sources[0], "autopipe": made_by}
    written = [_copy_nifti(mask, paths["mask"], np.uint8), _copy_nifti(probability, paths["probseg"], np.float32)]
    written.append(write_json(_sidecar(paths["mask"]), {
        "Description": "automatic lesion segmentation: the lesion probability thresholded at 0.5 on the input "
                       "scan's grid (1 lesion, 0 not)",
        "Type": "Lesion", **common}))
    written.append(write_json(_sidecar(paths["probseg"]), {
        "Description": "automatic lesion segmentation: the probability of lesion of each voxel of the input scan, "
                       "mean of the ensemble's folds", **common}))
    return written


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".nii.gz") + ".json")


def _copy_nifti(source: Path, target: Path, dtype: type) -> Path:
    """`source` as a .nii.gz at `target`, atomically; a .nii.gz is copied byte for byte, other formats converted
    with the same grid."""
    if file_ending(source) == ".nii.gz":
        with atomic_path(target, suffix=".nii.gz") as tmp:
            shutil.copyfile(source, tmp)
        return target
    return write_like(target, read_volume(source).data, source, dtype)
