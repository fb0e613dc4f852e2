"""`autopipe preprocess` on a small synthetic cohort with skull, two channels and LPS-stored files.

One cohort (3 cases at 3 mm, FLAIR + T1, k-space) is synthesized, planned and preprocessed once per
module; the tests then check each step's result against the generator's ground truth.
"""

import json
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from autopipe.cli import main
from autopipe.cohort.dataset import load_dataset
from autopipe.cohort.image_io import UnreadableImage, read_volume, to_ras
from autopipe.layout import case_paths
from autopipe.paths import Workspace
from autopipe.preprocess import runner
from autopipe.preprocess.bias_field import n4_correct
from autopipe.preprocess.geometry import Grid
from autopipe.preprocess.properties import CaseProperties, read_properties
from autopipe.preprocess.registration import apply
from autopipe.preprocess.runner import preprocess_dataset
from autopipe.preprocess.storage import read_case
from autopipe.synth.cohort import SynthOptions, synthesize_cohort
from autopipe.synth.tissues import TISSUE_LABELS

DATASET = "Dataset003_Synth"
CASES = ("PVL_001", "PVL_002", "PVL_003")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def tree_digest(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("pre")
    options = SynthOptions(num_cases=3, seed=3, spacing=(3.0, 3.0, 3.0), orientation="LPS", channels=("FLAIR", "T1"),
                           coils=4, kspace_slices=2, tasks=("segmentation", "reconstruction"))
    synthesize_cohort(base / "raw_data" / DATASET, options, workers=1, progress=False)
    assert main(["plan", "--raw-dir", str(base / "raw_data"), "--plans-dir", str(base / "plans"), "-j", "1", "-q",
                 "--throughput-gflops", "100"]) == 0
    return base


@pytest.fixture(scope="module")
def run(base) -> SimpleNamespace:
    raw = base / "raw_data"
    before = tree_digest(raw)
    ws = Workspace(raw=raw, plans=base / "plans", preprocessed=base / "preprocessed", results=base / "results")
    result = preprocess_dataset(raw / DATASET, ws, workers=1, progress=False)
    return SimpleNamespace(**vars(result), raw_unchanged=tree_digest(raw) == before)


def properties(run: SimpleNamespace, case: str) -> CaseProperties:
    return read_properties(case_paths(run.folder, case)[1])


def test_every_case_is_written_and_raw_data_is_untouched(run):
    assert run.failed == {}
    assert run.raw_unchanged
    folder = run.folder
    assert folder.name == "template_3mm"
    for case in CASES:
        arrays, props = case_paths(folder, case)
        assert arrays.is_file() and props.is_file()
        assert (folder / "qc" / f"{case}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (folder.parent / "kspace" / f"{case}.h5").is_file()
    assert (folder / "qc" / "montage.png").is_file()
    report = json.loads((folder / "report.json").read_text())
    assert [row["case"] for row in report["cases"]] == list(CASES)
    assert set(report["summary"]["mean_seconds_per_step"]) >= {"skull_strip", "bias_field", "register", "resample"}


def test_kspace_slices_keep_every_class_of_the_labels(run, base):
    """The multitask models segment tissue and lesions: the prepared slices hold the class of every pixel."""
    import h5py

    labels = load_dataset(base / "raw_data" / DATASET).labels
    for case in CASES:
        with h5py.File(run.folder.parent / "kspace" / f"{case}.h5", "r") as f:
            slices, names = f["segmentation"][()], [str(n) for n in f.attrs["class_names"]]
            lesion_classes, axis, indices = list(f.attrs["lesion_classes"]), f.attrs["slice_axis"], f.attrs[
                "slice_indices"]
        assert names == list(labels) and lesion_classes == [names.index("lesion")]
        raw = read_volume(base / "raw_data" / DATASET / "labelsTr" / f"{case}.nii.gz").data
        expected = np.moveaxis(np.take(raw, indices, axis=int(axis)), int(axis), 0)
        assert np.array_equal(slices, expected)  # the synthetic values are the class positions 0..4
        assert {1, 2, 3} <= set(np.unique(slices).tolist())


def test_skull_strip_matches_ground_truth_brain(run, base):
    """The brain mask, mapped back to the native scan, against the generator's brain mask."""
    fingerprint = json.loads((base / "plans" / DATASET / "fingerprint.json").read_text())
    assert fingerprint["anatomy"]["needs_strip_cases"] == list(CASES)  # the generator's heads have a skull
    for case in CASES:
        props = properties(run, case)
        assert props.anatomy.evidence.needs_strip and props.anatomy.stripped_with == "deepbet"
        assert props.plausibility.findings == (), props.plausibility
        brain = read_case(case_paths(run.folder, case)[0], ("brain",))["brain"]
        native = props.mask_to_native(brain, run.folder)
        truth = read_volume(base / "raw_data" / DATASET / "groundtruth" / f"{case}_brain.nii.gz")
        assert np.allclose(native.affine, truth.affine)
        # through the crop, the template grid (3 mm) and back; deepbet alone reaches 0.97-0.98 at 2 mm
        assert dice(native.data, truth.data) > 0.93, case


def test_labels_stay_binary_and_survive_the_round_trip(run, base):
    for case in CASES:
        arrays = read_case(case_paths(run.folder, case)[0])
        assert set(np.unique(arrays["seg"])) <= {0, 1}
        assert set(np.unique(arrays["brain"])) <= {0, 1}
        assert arrays["image"].dtype == np.float32 and arrays["image"].shape[0] == 2
        props = properties(run, case)
        lesion = load_dataset(base / "raw_data" / DATASET).labels["lesion"]  # tissue + lesion labels
        label = read_volume(base / "raw_data" / DATASET / "labelsTr" / f"{case}.nii.gz").data == lesion
        back = props.mask_to_native(arrays["seg"], run.folder)
        assert back.shape == label.shape
        if label.sum() > 20:  # lesions of a few voxels at 3 mm do not survive two resamplings intact
            assert dice(back.data, label) > 0.5, case


def test_images_are_normalized_inside_the_brain(run):
    arrays = read_case(case_paths(run.folder, "PVL_001")[0])
    for channel in arrays["image"]:
        inside = channel[arrays["brain"] > 0]
        assert abs(inside.mean()) < 0.1 and abs(inside.std() - 1) < 0.1
        assert np.all(channel[arrays["brain"] == 0] == 0)


def test_geometry_is_recorded(run):
    props = properties(run, "PVL_001")
    full, grid = props.full_grid.as_grid(), props.grid.as_grid()
    box = props.crop_box
    assert grid.shape == tuple(hi - lo for lo, hi in box)
    assert np.allclose(full.crop(tuple(map(tuple, box))).affine, grid.affine)
    assert np.allclose(grid.spacing, (3.0, 3.0, 3.0))
    assert props.native.axcodes == "LPS"
    assert 0.9 < props.registration_dice <= 1.0
    folder = run.folder / props.transforms.folder
    for name in props.transforms.to_template.forward:
        assert (folder / name).is_file()
    assert props.transforms.channels_to_channel0[1].forward


def test_registration_raises_white_matter_overlap_across_subjects(run, base):
    """White matter of two subjects overlaps better in template space than in scanner space."""
    tissues = [read_volume(base / "raw_data" / DATASET / "groundtruth" / f"{c}_tissues.nii.gz") for c in CASES[:2]]
    wm = [t.with_data((t.data == TISSUE_LABELS["wm"]).astype(np.float32)) for t in tissues]
    scanner = apply(wm[1], Grid.of(wm[0]), (), 1) >= 0.5
    before = dice(wm[0].data, scanner)
    template_grid = properties(run, CASES[0]).full_grid.as_grid()
    warped = []
    for case, volume in zip(CASES[:2], wm, strict=True):
        transforms = tuple(properties(run, case).transforms.to_template.forward)
        warped.append(apply(volume, template_grid, transforms, 1, run.folder / "transforms") >= 0.5)
    after = dice(*warped)
    assert after > before + 0.1, (before, after)


def test_n4_lowers_white_matter_variation(base):
    case = base / "raw_data" / DATASET
    image = to_ras(read_volume(case / "imagesTr" / "PVL_001_0000.nii.gz", np.float32))
    brain = to_ras(read_volume(case / "groundtruth" / "PVL_001_brain.nii.gz")).data > 0
    wm = to_ras(read_volume(case / "groundtruth" / "PVL_001_tissues.nii.gz")).data == TISSUE_LABELS["wm"]
    corrected, field = n4_correct(image.data, brain, image.spacing)

    def cov(x: np.ndarray) -> float:
        return float(x[wm].std() / x[wm].mean())

    assert cov(corrected) < 0.8 * cov(image.data)
    assert field.shape == image.shape and np.all(field > 0)


def test_second_run_skips_finished_cases(run, base):
    ws = Workspace(raw=base / "raw_data", plans=base / "plans", preprocessed=base / "preprocessed",
                   results=base / "results")
    again = preprocess_dataset(base / "raw_data" / DATASET, ws, workers=1, progress=False, qc=False)
    assert again.skipped == 3 and again.processed == 0
    assert [row["case"] for row in again.report["cases"]] == list(CASES)


def test_corrupt_case_is_reported_while_the_others_finish(run, base, tmp_path, capsys, monkeypatch):
    raw = tmp_path / "raw_data"
    shutil.copytree(base / "raw_data" / DATASET, raw / DATASET)
    shutil.copytree(base / "plans", tmp_path / "plans")
    shutil.copytree(run.folder.parent, tmp_path / "preprocessed" / DATASET)
    folder = tmp_path / "preprocessed" / DATASET / run.folder.name
    (folder / "PVL_003.json").unlink()  # to be redone: must finish despite PVL_001 failing first
    (folder / "PVL_001.json").unlink()
    options = ["--raw-dir", str(raw), "--plans-dir", str(tmp_path / "plans"), "--preprocessed-dir",
               str(tmp_path / "preprocessed"), "-j", "1", "-q", "--no-qc"]
    bad = raw / DATASET / "imagesTr" / "PVL_001_0001.nii.gz"
    good = bad.read_bytes()
    bad.write_bytes(good[:200])
    assert main(["preprocess", *options]) == 2  # the gate: check's error, before any case is touched
    out, err = capsys.readouterr()
    assert "PVL_001" in err and "imagesTr/PVL_001_0001.nii.gz" in err and "cannot be read" in err
    assert "Traceback" not in out + err and not (folder / "PVL_003.json").exists()
    bad.write_bytes(good)  # a failure no check can see coming: reported for its case while the others finish
    original = runner.preprocess_case

    def failing(job):
        if job.case_id == "PVL_001":
            raise UnreadableImage("truncated")
        return original(job)

    monkeypatch.setattr(runner, "preprocess_case", failing)
    code = main(["preprocess", *options])
    out, err = capsys.readouterr()
    assert code == 1
    assert "PVL_001" in out and "FAILED" in out and "cannot read" in out
    assert "1 case(s) failed" in err and "Traceback" not in out + err
    assert (folder / "PVL_003.json").is_file() and not (folder / "PVL_001.json").exists()


# 36 s; tests/test_crash_safety.py kills preprocess at a rename in the default suite, at every rename with -m slow
@pytest.mark.slow
def test_killed_run_resumes_without_half_written_cases(base, tmp_path):
    args = [sys.executable, "-m", "autopipe", "preprocess", "--raw-dir", str(base / "raw_data"), "--plans-dir",
            str(base / "plans"), "--preprocessed-dir", str(tmp_path), "-j", "1", "-q", "--no-qc"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    folder = tmp_path / DATASET / "template_3mm"
    deadline = time.monotonic() + 120
    while not (folder / "PVL_001.json").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # well into the second case
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = [c for c in CASES if case_paths(folder, c)[1].exists()]
    assert "PVL_001" in finished and len(finished) < 3
    for case in CASES:  # a case either looks finished and is complete, or does not look finished
        arrays, props = case_paths(folder, case)
        if props.exists():
            assert read_case(arrays)["image"].shape[0] == 2
    ws = Workspace(raw=base / "raw_data", plans=base / "plans", preprocessed=tmp_path, results=tmp_path / "r")
    resumed = preprocess_dataset(base / "raw_data" / DATASET, ws, workers=1, progress=False, qc=False)
    assert resumed.skipped == len(finished) and resumed.failed == {}
    assert all(case_paths(folder, c)[1].exists() for c in CASES)
    assert not list(folder.rglob(".tmp_*"))
    assert math.isclose(properties(resumed, "PVL_001").brain_volume_ml,
                        read_properties(case_paths(folder, "PVL_001")[1]).brain_volume_ml)


def test_deepbet_reaches_the_target_dice_on_synthetic_heads(base):
    """The issue's target, 0.95 against the generator's brain masks, on FLAIR and T1 at 3 mm."""
    from autopipe.preprocess.skull_strip import brain_mask

    case = base / "raw_data" / DATASET
    truth = to_ras(read_volume(case / "groundtruth" / "PVL_002_brain.nii.gz")).data > 0
    for channel in ("0000", "0001"):
        image = to_ras(read_volume(case / "imagesTr" / f"PVL_002_{channel}.nii.gz", np.float32))
        assert dice(brain_mask(image.data, "deepbet"), truth) >= 0.95, channel


def test_native_space_with_syn_maps_back_to_the_scan(base, tmp_path):
    """The plan's other space and transform: a grid on the scan's own RAS axes, SyN to the template."""
    import dataclasses

    from autopipe.plan.plans_file import load_plans
    from autopipe.preprocess.case import CaseJob, preprocess_case
    from autopipe.preprocess.storage import plan_digest

    cohort = base / "raw_data" / DATASET
    plan = dataclasses.replace(load_plans(base / "plans" / DATASET / "plans.json").preprocessing,
                               space="native", registration_transform="SyN")
    images = tuple(cohort / "imagesTr" / f"PVL_003_{k:04d}.nii.gz" for k in range(2))
    props = preprocess_case(CaseJob("PVL_003", images, cohort / "labelsTr" / "PVL_003.nii.gz", tmp_path, plan,
                                    plan_digest(plan), qc=False))
    assert props.space == "native" and props.transforms.to_grid == ()
    assert len(props.transforms.to_template.forward) == 2  # warp + affine
    grid = props.grid.as_grid()
    assert np.allclose(grid.affine[:3, :3], np.diag([3.0, 3.0, 3.0]))  # RAS axes of the scan, no rotation
    brain = read_case(tmp_path / "PVL_003.h5", ("brain",))["brain"]
    truth = read_volume(cohort / "groundtruth" / "PVL_003_brain.nii.gz").data
    assert dice(props.mask_to_native(brain, tmp_path).data, truth) > 0.93
    assert props.registration_dice > 0.9
