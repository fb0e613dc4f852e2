"""`autopipe synth`: write a synthetic cohort folder in the cohort format (autopipe.cohort.dataset).

    out/dataset.json                    channels, labels, numTraining, clinical + kspace blocks
    out/imagesTr/PVL_001_0000.nii.gz    int16 FLAIR (channel 1: T1 when asked), one grid per case
    out/labelsTr/PVL_001.nii.gz         uint8 label map on the same grid: lesion (1), or, with tissue
                                        labels, CSF 1, grey matter 2, white matter 3, lesion 4 (LABEL_SETS)
    out/imagesTs/...                    num_test_cases extra cases without labels
    out/clinical.csv                    case_id, hand_function (good/impaired), age, sex
    out/kspace/PVL_001.h5               multicoil k-space slab (autopipe.cohort.kspace_file layout)
    out/groundtruth/                    see autopipe.synth.groundtruth

Case i (0-based; test cases follow the training cases) is rendered from
SeedSequence(options.seed, spawn_key=(i, component)), so a cohort is the same for a seed whatever
the number of workers. Numerical libraries use whatever threads the caller set (autopipe.runtime).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from autopipe import __version__
from autopipe.cohort.image_io import Volume, write_volume
from autopipe.cohort.kspace_file import write_kspace_file
from autopipe.errors import AutopipeError
from autopipe.executor import Workers, parallel_map
from autopipe.files import to_plain, write_text_atomic
from autopipe.mri.masks import MASK_KINDS
from autopipe.synth import groundtruth, handfunction
from autopipe.synth.contrast import MEANS
from autopipe.synth.subject import (
    RenderedSubject,
    SubjectSpec,
    render_subject,
    sample_subject,
    stream,
    warm_up,
)
from autopipe.synth.tissues import TISSUE_LABELS

log = logging.getLogger(__name__)

TASKS = ("segmentation", "reconstruction", "hand_function")
FILE_ENDING = ".nii.gz"
CASE_PREFIX = "PVL"
DESCRIPTION = ("Synthetic brain MRI of patients with periventricular white-matter lesions, made by autopipe.synth "
               "from the ICBM152 2009 template: warped anatomy, skull and scalp, lesions, FLAIR contrast with "
               "bias field and Rician noise, multicoil k-space, and a hand-function label from motor lesion load.")
LABEL_SETS = {
    "lesion": {"background": 0, "lesion": 1},
    "tissue": {"background": 0, "csf": 1, "grey_matter": 2, "white_matter": 3, "lesion": 4},
}
TISSUE_NAMES = {"csf": "csf", "grey_matter": "gm", "white_matter": "wm"}
"""LABEL_SETS["tissue"] name -> the generator's tissue name (autopipe.synth.tissues.TISSUE_LABELS)."""
"""The label maps `synth` can write. "tissue": brain tissue and lesions, as MTLRS segments them; skull, scalp and
air are background, and the lesion voxels are those of "lesion" (the same threshold on the lesion fraction)."""
REFERENCE = ("Fonov et al., NeuroImage 2011 (ICBM152 2009 template, via nilearn); autopipe.synth (this generator). "
             "Ground truth in groundtruth/.")


@dataclass(frozen=True)
class SynthOptions:
    """What cohort to make. spacing is mm per array axis; orientation a nibabel axis code (RAS, LPS, PIR...)."""

    num_cases: int = 20
    seed: int = 0
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    orientation: str = "RAS"
    channels: tuple[str, ...] = ("FLAIR",)
    coils: int = 8
    acceleration: float = 7.5
    mask_type: str = "poisson"
    calibration_size: int | None = None  # None: ~8% of the matrix (2D masks) or ~4% of the lines (1D)
    kspace_slices: int = 12
    tasks: tuple[str, ...] = TASKS
    num_test_cases: int = 0
    dataset_name: str = "SynthPVL"
    labels: str = "auto"  # a key of LABEL_SETS; auto: tissue where k-space is written (MTLRS), else lesion

    def __post_init__(self) -> None:
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "channels", tuple(self.channels))
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "orientation", str(self.orientation).upper())
        if self.labels == "auto":
            object.__setattr__(self, "labels", "tissue" if "reconstruction" in self.tasks else "lesion")
        _validate(self)

    def subject_spec(self) -> SubjectSpec:
        return SubjectSpec(self.channels, "reconstruction" in self.tasks, self.coils, self.mask_type,
                           self.acceleration, self.calibration_size, self.kspace_slices)


def _validate(o: SynthOptions) -> None:
    """Raise AutopipeError naming the option that is wrong."""
    from autopipe.synth.geometry import output_grid

    checks = [
        (o.num_cases >= 1, f"num_cases must be >= 1, got {o.num_cases}"),
        (o.num_test_cases >= 0, f"num_test_cases must be >= 0, got {o.num_test_cases}"),
        (len(o.spacing) == 3 and min(o.spacing) > 0, f"spacing must be 3 positive numbers (mm), got {o.spacing}"),
        (bool(o.channels) and o.channels[0] == "FLAIR" and set(o.channels) <= set(MEANS),
         f"channels must start with FLAIR and come from {sorted(MEANS)}, got {o.channels}"),
        (len(set(o.channels)) == len(o.channels), f"channels repeat: {o.channels}"),
        (o.coils >= 1, f"coils must be >= 1, got {o.coils}"),
        (o.acceleration >= 1, f"acceleration must be >= 1, got {o.acceleration}"),
        (o.mask_type in MASK_KINDS, f"mask_type {o.mask_type!r} is not one of {sorted(MASK_KINDS)}"),
        (o.kspace_slices >= 1, f"kspace_slices must be >= 1, got {o.kspace_slices}"),
        (set(o.tasks) <= set(TASKS), f"tasks {o.tasks} must come from {TASKS}"),
        (o.labels in LABEL_SETS, f"labels must be auto or one of {sorted(LABEL_SETS)}, got {o.labels!r}"),
        (o.dataset_name.isidentifier(), f"dataset_name {o.dataset_name!r} must be a plain name"),
    ]
    for ok, message in checks:
        if not ok:
            raise AutopipeError(message, where="synth options")
    try:
        output_grid(np.zeros(3), np.ones(3), (1.0, 1.0, 1.0), o.orientation)
    except ValueError as exc:
        raise AutopipeError(str(exc), where="synth options", fix="use e.g. RAS, LPS or LAS") from exc


@dataclass(frozen=True)
class CaseJob:
    """One case to make: small and picklable, for a worker process."""

    out: str
    options: SynthOptions
    index: int
    case_id: str
    training: bool = True


def case_ids(options: SynthOptions) -> list[tuple[str, bool]]:
    """(case id, is training) for every case: PVL_001... for training, then the test cases."""
    total = options.num_cases + options.num_test_cases
    width = max(3, len(str(total)))
    return [(f"{CASE_PREFIX}_{i + 1:0{width}d}", i < options.num_cases) for i in range(total)]


def synthesize_case(job: CaseJob) -> dict:
    """Sample, render and write one case; returns its generator.json record (runs in a worker)."""
    started = time.monotonic()
    options, root = job.options, Path(job.out)
    params = sample_subject(options.seed, job.index, options.subject_spec())
    rendered = render_subject(params, options.spacing, options.orientation)
    hand = handfunction.hand_function(stream(options.seed, job.index, "hand_function"), rendered.motor_load_ml)
    clinical_rng = stream(options.seed, job.index, "clinical")
    clinical = {"age": int(np.clip(round(clinical_rng.normal(38, 12)), 18, 75)),
                "sex": "F" if clinical_rng.uniform() < 0.6 else "M"}
    paths = _write_images(root, job, rendered)
    paths += groundtruth.write_case_groundtruth(root, job.case_id, params, rendered)
    record = {"case_id": job.case_id, "split": "train" if job.training else "test", "case_index": job.index,
              "parameters": params, "image_shape": rendered.grid.shape, "image_affine": rendered.grid.affine,
              "lesion_load_ml": rendered.total_load_ml, "lesion_voxels": int(rendered.lesion_label.sum()),
              "motor_lesion_load_ml": rendered.motor_load_ml, "hand_function": hand, "clinical": clinical}
    if rendered.kspace is not None:
        slab = rendered.kspace
        if options.labels == "tissue":
            slab = replace(slab, segmentation=_slab_labels(rendered, slab))
        if job.training:
            paths.append(write_kspace_file(root / "kspace" / f"{job.case_id}.h5", slab.kspace, slab.attrs,
                                           mask=slab.mask, reconstruction_sense=slab.reconstruction_sense,
                                           segmentation=slab.segmentation if "segmentation" in options.tasks
                                           else None))
        record["kspace"] = {**slab.attrs, "coil_geometry": slab.coils, "coil_frame": (
            "x along H, y along W, z along slice_axis; mm from the centre of the image grid")}
    record["bytes"] = sum(p.stat().st_size for p in paths)
    record["seconds"] = time.monotonic() - started
    return to_plain(record)


def _write_images(root: Path, job: CaseJob, rendered: RenderedSubject) -> list[Path]:
    folder = "imagesTr" if job.training else "imagesTs"
    affine = rendered.grid.affine
    paths = [write_volume(root / folder / f"{job.case_id}_{channel:04d}{FILE_ENDING}", Volume(image, affine))
             for channel, image in enumerate(rendered.images.values())]
    if job.training:
        paths.append(write_volume(root / "labelsTr" / f"{job.case_id}{FILE_ENDING}",
                                  Volume(label_map(rendered, job.options.labels), affine), np.uint8))
    return paths


def label_map(rendered: RenderedSubject, labels: str) -> np.ndarray:
    """The case's uint8 label map in LABEL_SETS[labels] values. Tissue: the largest fraction per voxel; lesion
    where the lesion label is (lesion fraction >= 0.5, as in the lesion-only map), and white matter where the
    lesion fraction is the largest but under half (lesions replace white matter)."""
    if labels == "lesion":
        return rendered.lesion_label.astype(np.uint8)
    tissue, names = rendered.tissue_labels, LABEL_SETS["tissue"]
    out = np.zeros(tissue.shape, np.uint8)
    for name in ("csf", "grey_matter", "white_matter"):
        out[tissue == TISSUE_LABELS[TISSUE_NAMES[name]]] = names[name]
    out[tissue == TISSUE_LABELS["lesion"]] = names["white_matter"]
    out[rendered.lesion_label > 0] = names["lesion"]
    return out


def _slab_labels(rendered: RenderedSubject, slab) -> np.ndarray:
    """The k-space slab's slices of the tissue label map."""
    from autopipe.synth.kspace import take_slices

    axis, indices = slab.attrs["slice_axis"], np.asarray(slab.attrs["slice_indices"])
    return take_slices(label_map(rendered, "tissue"), axis, indices).astype(np.uint8)


def synthesize_cohort(out: Path, options: SynthOptions, workers: Workers = 1, progress: bool = True) -> dict:
    """Write the cohort into `out` (created; must be empty) and return a summary of it.

    Summary: cases, seconds, bytes on disk, mean measured effective acceleration, impaired fraction and
    expected Bayes accuracy of the hand-function labels (training cases).
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise AutopipeError(f"{out} is not empty", where="autopipe synth",
                            fix="give a new folder, or use autopipe.synth.output.synthesize_atomically(force=True) "
                                "to replace a synthetic cohort")
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    warm_up(options.spacing, options.orientation)  # once here: forked workers inherit the caches
    jobs = [CaseJob(str(out), options, i, case, training) for i, (case, training) in enumerate(case_ids(options))]
    records = parallel_map(synthesize_case, jobs, workers, desc="synth", enabled=progress)
    training = [r for r in records if r["split"] == "train"]
    if "hand_function" in options.tasks:
        _write_clinical(out, training)
    groundtruth.write_motor_region(out)
    summary = _summary(records, training, time.monotonic() - started)
    groundtruth.write_json(out / groundtruth.FOLDER / "generator.json", _generator(options, records, summary))
    groundtruth.write_json(out / "dataset.json", _dataset_json(options))  # last: the cohort is complete
    summary["bytes"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    log.info("synth: %d cases in %.1f s, %.1f MB", len(records), summary["seconds"], summary["bytes"] / 1e6)
    return summary


def _write_clinical(out: Path, training: list[dict]) -> None:
    lines = ["case_id,hand_function,age,sex"]
    lines += [f"{r['case_id']},{'impaired' if r['hand_function']['impaired'] else 'good'},"
              f"{r['clinical']['age']},{r['clinical']['sex']}" for r in training]
    write_text_atomic(out / "clinical.csv", "\n".join(lines) + "\n")


def _summary(records: list[dict], training: list[dict], seconds: float) -> dict:
    probabilities = [r["hand_function"]["probability"] for r in training]
    accelerations = [r["kspace"]["effective_acceleration"] for r in records if "kspace" in r]
    return {
        "num_cases": len(training), "num_test_cases": len(records) - len(training), "seconds": round(seconds, 1),
        "mean_effective_acceleration": round(float(np.mean(accelerations)), 3) if accelerations else None,
        "impaired_fraction": round(float(np.mean([r["hand_function"]["impaired"] for r in training])), 3),
        "expected_impaired_fraction": round(float(np.mean(probabilities)), 3),
        "bayes_accuracy": round(handfunction.bayes_accuracy(probabilities), 3),
        "mean_lesion_load_ml": round(float(np.mean([r["lesion_load_ml"] for r in training])), 2),
    }


def _generator(options: SynthOptions, records: list[dict], summary: dict) -> dict:
    from autopipe.synth.contrast import __doc__ as contrast_doc

    return {
        "generator": "autopipe.synth", "version": __version__, "options": options,
        "template": {"name": "ICBM152 2009 symmetric (nilearn load_mni152_*), 1 mm",
                     "motor_region": groundtruth.MOTOR_REGION_FILE},
        "seeding": "case i, component c: numpy SeedSequence(options.seed, spawn_key=(i, STREAMS[c])) "
                   "(autopipe.synth.subject.STREAMS)",
        "tissue_labels": groundtruth.tissue_legend(),
        "intensity_model": contrast_doc.strip(),
        "pose_convention": groundtruth.POSE_CONVENTION,
        "hand_function": {**handfunction.model_description(), "impaired_fraction": summary["impaired_fraction"],
                          "expected_bayes_accuracy": summary["bayes_accuracy"],
                          "probabilities": {r["case_id"]: r["hand_function"]["probability"] for r in records}},
        "summary": summary,
        "cases": records,
    }


def _dataset_json(options: SynthOptions) -> dict:
    dataset = {"channel_names": {str(i): c for i, c in enumerate(options.channels)},
               "labels": dict(LABEL_SETS[options.labels]), "numTraining": options.num_cases,
               "file_ending": FILE_ENDING, "name": options.dataset_name, "description": DESCRIPTION,
               "reference": REFERENCE, "synthetic": {"generator": "autopipe.synth", "seed": options.seed,
                                                     "groundtruth": f"{groundtruth.FOLDER}/generator.json"}}
    if "hand_function" in options.tasks:
        dataset["clinical"] = {"file": "clinical.csv"}
    if "reconstruction" in options.tasks:
        dataset["kspace"] = {"folder": "kspace"}
    return dataset
