"""Build tiny, valid cohorts in a temporary folder, for tests that then break one thing on purpose."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from autopipe.cohort.image_io import Volume, write_volume
from autopipe.cohort.kspace_file import write_kspace_file


def make_tiny_cohort(root: Path, n_cases: int = 4, shape: tuple[int, int, int] = (20, 24, 16),
                     spacing: tuple[float, float, float] = (2.0, 2.0, 2.0), channels: tuple[str, ...] = ("FLAIR",),
                     clinical: bool = True, kspace: bool = True, coils: int = 4, kspace_slices: int = 3,
                     seed: int = 0) -> Path:
    """A valid cohort `root` (named like DatasetNNN_Name by the caller): ellipsoid 'brains' with lesions."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -np.array(shape) * np.array(spacing) / 2
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    brain = (grid**2).sum(0) < 0.7
    case_ids = [f"case_{i:03d}" for i in range(n_cases)]
    for i, case in enumerate(case_ids):
        label = np.zeros(shape, np.uint8)
        if i % 4 != 3:  # every fourth case has no lesion
            c = rng.integers(np.array(shape) // 3, 2 * np.array(shape) // 3)
            label[c[0] - 1:c[0] + 2, c[1] - 1:c[1] + 2, c[2] - 1:c[2] + 1] = 1
        for ch, _ in enumerate(channels):
            image = brain * (100 + 10 * ch) + label * 50 + rng.normal(0, 2, shape)
            write_volume(root / "imagesTr" / f"{case}_{ch:04d}.nii.gz", Volume(image.astype(np.float32), affine))
        write_volume(root / "labelsTr" / f"{case}.nii.gz", Volume(label, affine))
        if kspace:
            idx = np.arange(shape[2] // 2 - kspace_slices // 2, shape[2] // 2 - kspace_slices // 2 + kspace_slices)
            image = brain[:, :, idx].transpose(2, 0, 1).astype(np.complex64)
            maps = np.ones((kspace_slices, coils, shape[0], shape[1]), np.complex64) / np.sqrt(coils)
            ksp = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image[:, None] * maps, axes=(-2, -1)), norm="ortho"),
                                  axes=(-2, -1))
            mask = np.zeros(shape[:2], np.uint8)
            mask[::2, :] = 1
            write_kspace_file(root / "kspace" / f"{case}.h5", ksp, {
                "slice_axis": 2, "slice_indices": idx, "fully_sampled": True, "acceleration": 2.0,
                "effective_acceleration": float(mask.size / mask.sum()), "calibration_size": 4,
                "mask_type": "equispaced"}, mask=mask, segmentation=label[:, :, idx].transpose(2, 0, 1))
    dataset = {"channel_names": {str(i): c for i, c in enumerate(channels)},
               "labels": {"background": 0, "lesion": 1}, "numTraining": n_cases, "file_ending": ".nii.gz"}
    if clinical:
        rows = ["case_id,hand_function,age"] + [f"{c},{'impaired' if i % 2 else 'good'},{30 + i}"
                                                  for i, c in enumerate(case_ids)]
        (root / "clinical.csv").write_text("\n".join(rows) + "\n")
        dataset["clinical"] = {"file": "clinical.csv"}
    if kspace:
        dataset["kspace"] = {"folder": "kspace"}
    (root / "dataset.json").write_text(json.dumps(dataset, indent=2))
    return root


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under `root` and its SHA-256: equal before and after a command means it changed nothing."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def folders(base: Path) -> list[str]:
    """The CLI options that put all four workspace folders under `base`."""
    return ["--raw-dir", str(base / "raw_data"), "--plans-dir", str(base / "plans"),
            "--preprocessed-dir", str(base / "preprocessed"), "--results-dir", str(base / "results")]
