"""A cohort that is not whole heads (nnU-Net's hippocampus-like crops) plans through the CLI as nnU-Net plans it:
native space, no stripping, no registration, nnU-Net's patch and batch."""

import json

import numpy as np

from autopipe.cli import main
from autopipe.cohort.image_io import Volume, write_volume
from tests.tiny_cohort import folders, tree_digest

SHAPE = (36, 50, 35)  # 1 mm, like nnU-Net's hippocampus dataset
CASES = 260  # nnU-Net's batch of 9 is capped by 5% of the dataset's voxels, so the case count matters


def _hippocampus_like(root, n_cases=CASES):
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij"))
    tissue = 300 + 40 * np.sin(3 * grid[0]) * np.cos(2 * grid[1])  # MR intensities everywhere: a crop of a brain
    for i in range(n_cases):
        case = f"hippo_{i:03d}"
        image = tissue + rng.normal(0, 10, SHAPE)
        label = np.zeros(SHAPE, np.uint8)
        label[14:22, 18:34, 12:24] = 1
        label[14:22, 26:34, 12:24] = 2
        write_volume(root / "imagesTr" / f"{case}_0000.nii.gz", Volume(image.astype(np.int16), np.eye(4)))
        write_volume(root / "labelsTr" / f"{case}.nii.gz", Volume(label, np.eye(4)))
    dataset = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "anterior": 1, "posterior": 2},
               "numTraining": n_cases, "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps(dataset))
    return root


def test_hippocampus_crops_plan_like_nnunet_through_the_cli(tmp_path, capsys):
    root = _hippocampus_like(tmp_path / "raw_data" / "Dataset004_Hippocampus")
    before = tree_digest(root)
    assert main(["plan", "4", *folders(tmp_path), "-q", "--device", "cuda", "--memory-gb", "8"]) == 0
    assert tree_digest(root) == before
    out = capsys.readouterr().out
    assert "whole brain in view 0/260" in out
    plans = json.loads((tmp_path / "plans" / "Dataset004_Hippocampus" / "plans.json").read_text())
    pre = plans["preprocessing"]
    assert pre["field_of_view"]["value"] == "partial" and pre["space"]["value"] == "native"
    assert pre["skull_strip"]["value"] == "none" and pre["bias_field"]["value"] == ["none"]
    assert "no case holds a whole brain" in pre["skull_strip"]["reason"]
    fullres, flat = plans["configurations"]["3d_fullres"], plans["configurations"]["2d"]
    assert fullres["patch_size"]["value"] == [40, 56, 40] and fullres["batch_size"]["value"] == 9
    assert fullres["n_stages"]["value"] == 4
    assert flat["patch_size"]["value"] == [56, 40] and flat["batch_size"]["value"] == 366
    fingerprint = json.loads((tmp_path / "plans" / "Dataset004_Hippocampus" / "fingerprint.json").read_text())
    head = fingerprint["cases"]["hippo_000"]["head"]
    assert head["whole_brain"] is False and head["extractor_ml"] is None
