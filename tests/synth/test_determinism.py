"""The same seed gives the same cohort whatever the worker count; another seed gives another cohort."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from autopipe.cohort.kspace_file import read_kspace
from autopipe.synth.cohort import synthesize_cohort
from tests.synth.conftest import OPTIONS

VOLATILE = {"seconds"}  # timings


def _without_volatile(value):
    if isinstance(value, dict):
        return {k: _without_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_without_volatile(v) for v in value]
    return value


def _arrays(root) -> dict:
    out = {}
    for path in sorted(root.rglob("*.nii.gz")):
        out[str(path.relative_to(root))] = np.asarray(nib.load(path).dataobj)
    for path in sorted(root.rglob("*.h5")):
        data = read_kspace(path, names=("kspace", "mask", "reconstruction_sense", "segmentation"))
        out.update({f"{path.relative_to(root)}:{k}": np.asarray(v) for k, v in data.items() if k != "attrs"})
    return out


@pytest.fixture(scope="module")
def two_workers(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("synth2") / "Dataset001_SynthPVL"
    synthesize_cohort(out, OPTIONS, workers=2, progress=False)
    return out


def test_same_seed_same_files_whatever_the_workers(cohort, two_workers):
    files = sorted(p.relative_to(cohort) for p in cohort.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two_workers) for p in two_workers.rglob("*") if p.is_file())
    first, second = _arrays(cohort), _arrays(two_workers)
    assert first.keys() == second.keys()
    for name, array in first.items():
        np.testing.assert_array_equal(array, second[name], err_msg=name)
    for name in ("dataset.json", "clinical.csv"):
        assert (cohort / name).read_text() == (two_workers / name).read_text()
    generated = [json.loads((root / "groundtruth" / "generator.json").read_text()) for root in (cohort, two_workers)]
    assert _without_volatile(generated[0]) == _without_volatile(generated[1])


def test_another_seed_another_cohort(cohort, tmp_path):
    from dataclasses import replace

    out = tmp_path / "Dataset002_SynthPVL"
    synthesize_cohort(out, replace(OPTIONS, seed=1, num_cases=1, num_test_cases=0, tasks=("segmentation",)),
                      progress=False)
    a = np.asarray(nib.load(cohort / "imagesTr" / "PVL_001_0000.nii.gz").dataobj)
    b = np.asarray(nib.load(out / "imagesTr" / "PVL_001_0000.nii.gz").dataobj)
    assert a.shape != b.shape or not np.array_equal(a, b)
    generated = json.loads((out / "groundtruth" / "generator.json").read_text())
    assert generated["cases"][0]["parameters"]["pose"] != json.loads(
        (cohort / "groundtruth" / "generator.json").read_text())["cases"][0]["parameters"]["pose"]
