"""The reconstruction + segmentation approaches end to end through the CLI on a tiny synthetic cohort:
synth, plan (sizes shrunk in plans.json), preprocess, train fold 0, compare, predict on a k-space file."""

import json
import math
import shutil
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from autopipe.cli import main
from autopipe.predict.kspace_cases import slab_affine, slab_volume
from autopipe.preprocess.kspace_prep import prepare_kspace_case
from tests.tiny_cohort import folders, tree_digest

DATASET = "Dataset011_ReconTiny"
MODELS = ("cirim", "segmentation_fully_sampled", "segmentation_on_cirim", "end_to_end", "joint", "mtlrs")
APPROACHES = ("pretrained", "sequential", "end_to_end", "joint", "mtlrs")
ONE = ["-j", "1", "--threads", "1", "-q"]  # one thread: the test machine is small and shared




def shrink_plan(path: Path) -> None:
    """Tiny networks and a cheap image preprocessing (the k-space part is what is tested here)."""
    plans = json.loads(path.read_text())
    changes = {
        "reconstruction": {"cascades": 2, "time_steps": 2, "hidden_channels": 4, "cs_iterations": 10},
        "multitask": {"cascades": 2, "time_steps": 2, "hidden_channels": 4, "segmentation_channels": 4},
        "preprocessing": {"skull_strip": "none", "bias_field": ["none"]},
    }
    for section, values in changes.items():
        for key, value in values.items():
            plans[section][key]["value"] = value
    path.write_text(json.dumps(plans, indent=2))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """Three 2-coil cases with 2 k-space slices each; fold 0 holds out PVL_001, which has lesions in its slab."""
    base = tmp_path_factory.mktemp("recon")
    cohort = base / "raw_data" / DATASET
    assert main(["synth", str(cohort), "--cases", "3", "--spacing", "3", "--seed", "2", "--coils", "2",
                 "--kspace-slices", "2", "--tasks", "segmentation,reconstruction", *ONE]) == 0
    before = tree_digest(cohort)
    assert main(["plan", *folders(base), *ONE, "--throughput-gflops", "50"]) == 0
    shrink_plan(base / "plans" / DATASET / "plans.json")
    # skull_strip none on heads with skull fails its plausibility checks; accepted, as the k-space is under test
    assert main(["preprocess", *folders(base), *ONE, "--no-qc", "--accept", "all"]) == 0
    assert main(["train", "0", *folders(base), "-c", ",".join(("cs", *MODELS)), "--epochs", "1", *ONE]) == 0
    assert tree_digest(cohort) == before
    return base


def test_train_writes_every_model_and_compares_every_method(trained):
    results = trained / "results" / DATASET / "reconstruction"
    for model in MODELS:
        folder = results / model / "fold_0"
        assert (folder / "checkpoint_final.pt").is_file() and not (folder / "checkpoint_latest.pt").exists()
        assert "epoch 1/1" in (folder / "training.log").read_text()
    cs = json.loads((results / "cs" / "fold_0" / "cs.json").read_text())
    assert cs["iterations"] == 10 and set(cs["nmse"]) == {"0.001", "0.003", "0.01", "0.03"}

    comparison = json.loads((results / "comparison" / "fold_0.json").read_text())
    assert comparison["methods"] == ["zero_filled", "cg_sense", "cs", *APPROACHES]
    assert comparison["cases"] == ["PVL_001"] and comparison["missing_models"] == []
    assert comparison["cs_weight"] == cs["weight"]
    with h5py.File(trained / "preprocessed" / DATASET / "kspace" / "PVL_001.h5", "r") as f:
        assert f["segmentation"][()].any()  # so the held-out case has a per-lesion Dice
    for method in comparison["methods"]:
        row = comparison["per_subject"][method]["PVL_001"]
        assert all(math.isfinite(row[k]) for k in ("ssim", "psnr", "nmse")), (method, row)
        assert (method in APPROACHES) == ("dice" in row) == ("per_lesion_dice" in row)
        if method in APPROACHES:
            assert 0 <= row["dice"] <= 1 and 0 <= row["per_lesion_dice"] <= 1
        assert comparison["seconds_per_slice"][method] > 0


def test_predict_writes_the_slab_on_the_image_grid_and_leaves_the_file_alone(trained, tmp_path, capsys):
    source = trained / "raw_data" / DATASET / "kspace" / "PVL_001.h5"
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    copy = Path(shutil.copy(source, inputs))
    before = tree_digest(inputs)
    capsys.readouterr()
    assert main(["predict", "-i", str(inputs), "-o", str(out), *folders(trained), *ONE]) == 0
    assert "with mtlrs (folds 0)" in capsys.readouterr().out  # no summary.json yet: mtlrs
    assert tree_digest(inputs) == before

    with h5py.File(copy, "r") as f:
        slices, _, H, W = f["kspace"].shape
        axis, indices, affine = int(f.attrs["slice_axis"]), f.attrs["slice_indices"], f.attrs["affine"]
    expected_affine = slab_affine(np.asarray(affine, float).reshape(4, 4), axis, indices)
    shape = slab_volume(np.zeros((slices, H, W)), axis).shape
    reconstruction, lesions = nib.load(out / "PVL_001_reconstruction.nii.gz"), nib.load(out / "PVL_001_lesions.nii.gz")
    classes = nib.load(out / "PVL_001_classes.nii.gz")  # tissue + lesion labels: the class map too
    assert set(np.unique(np.asanyarray(classes.dataobj)).tolist()) <= {0, 1, 2, 3, 4}
    assert np.array_equal(np.asanyarray(lesions.dataobj), (np.asanyarray(classes.dataobj) == 4).astype(np.uint8))
    for image in (reconstruction, lesions, classes):
        assert image.shape == shape
        np.testing.assert_allclose(image.affine, expected_affine, atol=1e-4)
        assert image.header["sform_code"] == 1 and image.header["qform_code"] == 1
    magnitude = np.asanyarray(reconstruction.dataobj)
    assert magnitude.dtype == np.float32 and np.isfinite(magnitude).all() and magnitude.min() >= 0
    assert set(np.unique(np.asanyarray(lesions.dataobj)).tolist()) <= {0, 1}
    scale = prepare_kspace_case(copy, tmp_path / "prepared.h5")["scale"]  # the raw file's intensity units
    assert 0.2 < np.percentile(magnitude, 99) / scale < 5
