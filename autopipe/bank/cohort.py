"""Write bank variants as an nnU-Net raw cohort, with the answers kept outside it.

`root` gets dataset.json, imagesTr/CASE_000C.nii.gz (the variant's exact file bytes) and
labelsTr/CASE.nii.gz (three small lesion spheres in the brain, same grid and header geometry as the
image). The reference brain masks and the expected decisions go to `root.parent / (root.name +
"_references")`, so a pipeline run on the cohort cannot see them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from autopipe.bank.variants import Variant, VariantSpec, make_variant
from autopipe.cohort.image_io import spacing_of
from autopipe.files import atomic_path, write_json, write_text_atomic

LESION_COUNT = 3
LESION_RADIUS_MM = 4.0
HEAD_DEPTH_MM = 30.0  # without a brain mask, lesions go this deep inside the head: the brain is 10-20 mm down


def write_cohort(specs: list[VariantSpec], root: Path, channels: tuple[str, ...] = ("T1",)) -> Path:
    """Write one case per spec (case id = spec name) at `root`; channels ("T1",) or ("T1", "FLAIR")."""
    if channels not in (("T1",), ("T1", "FLAIR")):
        raise ValueError(f"channels must be ('T1',) or ('T1', 'FLAIR'), got {channels}")
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError("case ids (spec names) must be unique")
    root = Path(root)
    references = root.parent / f"{root.name}_references"
    expected = {}
    for spec in specs:
        images = root / "imagesTr"
        variant = make_variant(dataclasses.replace(spec, contrast="T1") if len(channels) > 1 else spec)
        variant.save(images / f"{spec.name}_0000.nii.gz")
        if len(channels) > 1:
            make_variant(dataclasses.replace(spec, contrast="FLAIR")).save(images / f"{spec.name}_0001.nii.gz")
        _save_like(variant, lesion_label(variant), root / "labelsTr" / f"{spec.name}.nii.gz")
        if variant.reference is not None:
            _save_like(variant, variant.reference.data, references / f"{spec.name}.nii.gz")
        expected[spec.name] = {"needs_strip": spec.needs_strip, "whole_brain": spec.whole_brain,
                               "brain_ml": None if variant.brain_ml is None else round(variant.brain_ml, 3),
                               "source": spec.source, "reference": variant.reference is not None}
    dataset = {"channel_names": {str(i): c for i, c in enumerate(channels)},
               "labels": {"background": 0, "lesion": 1}, "numTraining": len(specs), "file_ending": ".nii.gz"}
    write_text_atomic(root / "dataset.json", json.dumps(dataset, indent=2) + "\n")
    write_json(references / "expected.json", expected)
    return root


def lesion_label(variant: Variant) -> np.ndarray:
    """uint8 label on the variant's stored grid: LESION_COUNT spheres of LESION_RADIUS_MM, seeded by the spec.

    Centres lie where a whole sphere fits inside the reference brain (or, without one, deep in the upper half
    of the head, where the brain is), within the middle third of that region's extent along each axis.
    """
    region = (variant.reference if variant.reference is not None else variant.head).data.astype(bool)
    spacing = np.array(spacing_of(variant.image.affine))
    label = np.zeros(region.shape, np.uint8)
    if not region.any():
        return label
    depth = ndimage.distance_transform_edt(region, sampling=spacing)
    inside = depth > LESION_RADIUS_MM
    if variant.reference is None and variant.spec.whole_brain:  # no brain mask: deep in the head, above its middle
        superior = (variant.image.affine[:3, :3] @ np.indices(region.shape).reshape(3, -1))[2].reshape(region.shape)
        inside &= (depth > HEAD_DEPTH_MM) & (superior > np.median(superior[region]))
    if not inside.any():
        inside = depth >= depth.max()
    index = np.argwhere(inside)
    lo, hi = np.percentile(np.argwhere(region), [100 / 3, 200 / 3], axis=0)
    central = index[np.all((index >= np.floor(lo)) & (index <= np.ceil(hi)), axis=1)]
    candidates = central if len(central) else index
    rng = np.random.default_rng(variant.spec.seed)
    linear = variant.image.affine[:3, :3]
    centres: list[np.ndarray] = []
    for choice in rng.permutation(len(candidates))[:200]:
        centre = candidates[choice]
        world = linear @ centre
        gap = 2 * LESION_RADIUS_MM + 2 * spacing.max()  # two voxels apart: separate lesions at any resolution
        if all(np.linalg.norm(world - linear @ c) > gap for c in centres):
            centres.append(centre)
            _paint_sphere(label, centre, linear, region)
        if len(centres) == LESION_COUNT:
            break
    return label


def _paint_sphere(label: np.ndarray, centre: np.ndarray, linear: np.ndarray, region: np.ndarray) -> None:
    """Set to 1 the voxels of `region` within LESION_RADIUS_MM (world distance) of voxel `centre`."""
    reach = np.ceil(LESION_RADIUS_MM / np.array(spacing_of(np.pad(linear, ((0, 1), (0, 1)))))).astype(int) + 1
    lo, hi = np.maximum(centre - reach, 0), np.minimum(centre + reach + 1, label.shape)
    offsets = np.stack(np.meshgrid(*[np.arange(a, b) - c for a, b, c in zip(lo, hi, centre, strict=True)],
                                   indexing="ij"), axis=-1)
    ball = np.linalg.norm(offsets @ linear.T, axis=-1) <= LESION_RADIUS_MM
    window = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    label[window] |= (ball & region[window]).astype(np.uint8)


def _save_like(variant: Variant, data: np.ndarray, path: Path) -> Path:
    """Write a uint8 map with the image's sform and qform (both code 1), atomically."""
    img = nib.Nifti1Image(data.astype(np.uint8), variant.image.affine)
    img.header.set_data_dtype(np.uint8)
    img.set_sform(variant.image.header.get_sform(), code=1)
    img.set_qform(variant.image.header.get_qform(), code=1)
    with atomic_path(path, suffix=".nii.gz") as tmp:
        nib.save(img, str(tmp))
    return path
