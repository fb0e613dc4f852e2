"""The images behave like real scans: anatomy, lesions where MS/PVL lesions are, FLAIR contrast, a head, bias."""

from __future__ import annotations

import json
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from autopipe.synth.lesions import LesionParams
from autopipe.synth.subject import render_subject, sample_subject
from autopipe.synth.tissues import TISSUE_LABELS
from tests.synth.conftest import OPTIONS

CASES = ("PVL_001", "PVL_002", "PVL_003")
T = TISSUE_LABELS


def _load(cohort, case):
    image = nib.load(cohort / "imagesTr" / f"{case}_0000.nii.gz")
    tissues = np.asarray(nib.load(cohort / "groundtruth" / f"{case}_tissues.nii.gz").dataobj)
    brain = np.asarray(nib.load(cohort / "groundtruth" / f"{case}_brain.nii.gz").dataobj).astype(bool)
    lesion = json.loads((cohort / "dataset.json").read_text())["labels"]["lesion"]
    label = np.asarray(nib.load(cohort / "labelsTr" / f"{case}.nii.gz").dataobj) == lesion
    return np.asarray(image.dataobj).astype(np.float64), tissues, brain, label, image.header.get_zooms()


def test_lesions_replace_white_matter():
    """Rendered again without its lesions, a subject shows white matter where the lesions were."""
    spacing = (2.0, 2.0, 2.0)
    params = sample_subject(0, 3, OPTIONS.subject_spec())
    with_lesions = render_subject(params, spacing, "RAS")
    without = render_subject(replace(params, lesions=LesionParams(params.lesions.log_burden, ())), spacing, "RAS")
    lesion = with_lesions.lesion_label.astype(bool)
    assert lesion.sum() > 20
    underneath = without.tissue_labels[lesion]
    assert np.mean(underneath == T["wm"]) > 0.85
    assert np.all(np.isin(underneath, [T["wm"], T["csf"], T["gm"]]))  # never skull, scalp or air


def test_most_lesion_voxels_lie_near_the_ventricles(cohort):
    near, total = 0, 0
    for case in CASES:
        _, tissues, brain, label, zooms = _load(cohort, case)
        depth = ndimage.distance_transform_edt(brain, sampling=zooms)
        ventricles = (tissues == T["csf"]) & (depth > 15.0)
        assert ventricles.sum() > 0
        distance = ndimage.distance_transform_edt(~ventricles, sampling=zooms)
        near += int((distance[label] <= 12.0).sum())
        total += int(label.sum())
    assert total > 0 and near / total > 0.8


def test_flair_orders_csf_white_grey_lesion(cohort):
    means = {name: [] for name in ("csf", "wm", "gm", "lesion")}
    for case in CASES:
        image, tissues, brain, label, _ = _load(cohort, case)
        white = np.median(image[tissues == T["wm"]])
        for name in means:
            voxels = (tissues == T[name]) & brain
            if voxels.any():
                means[name].append(image[voxels].mean() / white)
    csf, wm, gm, lesion = (np.mean(means[n]) for n in ("csf", "wm", "gm", "lesion"))
    assert csf < 0.6 * wm and wm < gm < lesion


def test_lesions_are_brighter_than_the_white_matter_around_them(cohort):
    for case in CASES:
        image, tissues, _, label, _ = _load(cohort, case)
        if label.sum() < 3:
            continue
        ring = ndimage.binary_dilation(label, iterations=2) & ~label & (tissues == T["wm"])
        assert image[label].mean() > 1.15 * image[ring].mean()


def test_skull_and_scalp_surround_the_brain(cohort):
    for case in CASES:
        image, tissues, brain, _, _ = _load(cohort, case)
        white = np.median(image[tissues == T["wm"]])
        skull, scalp = tissues == T["skull"], tissues == T["scalp"]
        assert skull.sum() > 0.1 * brain.sum() and scalp.sum() > 0.1 * brain.sum()
        assert not (skull & brain).any() and not (scalp & brain).any()
        assert image[scalp].mean() > 1.1 * white  # bright fat
        assert image[skull].mean() < 0.8 * white  # dark bone, some marrow
        outside = ~ndimage.binary_dilation(brain, iterations=2)
        assert np.mean(image[outside] > 0.5 * white) > 0.05  # a head, not just a brain in air


def test_a_bias_field_modulates_white_matter(cohort, generator):
    for case, record in zip(CASES, generator["cases"], strict=False):
        image, tissues, _, _, _ = _load(cohort, case)
        white = ndimage.binary_erosion(tissues == T["wm"])
        index = np.argwhere(white)
        halves = index >= np.median(index, axis=0)
        octants = [image[tuple(index[(halves == np.array(o)).all(1)].T)].mean()
                   for o in np.ndindex(2, 2, 2)]
        assert (max(octants) - min(octants)) / np.mean(octants) > 0.08
        assert 0.18 <= record["parameters"]["acquisition"]["bias_amplitude"] <= 0.28


@pytest.mark.parametrize(("orientation", "spacing"), [("LPS", (2.0, 2.5, 4.0)), ("RAS", (3.0, 3.0, 3.0))])
def test_grid_has_the_requested_orientation_and_spacing(cohort, tmp_path, orientation, spacing):
    from autopipe.synth.cohort import synthesize_cohort

    root = cohort
    if orientation != OPTIONS.orientation or spacing != OPTIONS.spacing:
        root = tmp_path / "Dataset003_SynthPVL"
        synthesize_cohort(root, replace(OPTIONS, num_cases=1, num_test_cases=0, spacing=spacing,
                                        orientation=orientation), progress=False)
    for path in [root / "imagesTr" / "PVL_001_0000.nii.gz", root / "labelsTr" / "PVL_001.nii.gz"]:
        image = nib.load(path)
        assert "".join(nib.aff2axcodes(image.affine)) == orientation
        np.testing.assert_allclose(image.header.get_zooms(), spacing, rtol=1e-5)
