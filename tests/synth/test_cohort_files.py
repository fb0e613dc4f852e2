"""The synthetic cohort is a valid cohort: layout, dataset.json, labels on the image grid, clinical table."""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest

from autopipe.cohort.dataset import load_dataset, training_case_ids
from autopipe.synth.cohort import LABEL_SETS, SynthOptions
from autopipe.synth.handfunction import LOAD_AT_HALF_ML, SLOPE_PER_ML, hand_function
from autopipe.synth.lesions import rasterize_lesions
from autopipe.synth.subject import sample_subject, stream
from autopipe.synth.template import load_template
from autopipe.synth.tissues import TISSUE_LABELS
from tests.synth.conftest import OPTIONS


def test_check_cohort_finds_no_error(cohort):
    check = pytest.importorskip("autopipe.cohort.check", reason="autopipe check (autopipe/cohort/check.py) not there")
    problems = check.check_cohort(cohort, progress=False)
    assert [check.format_problem(p) for p in problems if p.severity == "error"] == []


def test_dataset_json_declares_channels_labels_clinical_and_kspace(cohort):
    spec = load_dataset(cohort)
    assert spec.channel_names == {0: "FLAIR", 1: "T1"}
    assert spec.labels == LABEL_SETS["tissue"]  # k-space is written: tissue + lesion labels, as MTLRS segments
    assert spec.num_training == 3 and training_case_ids(spec) == ["PVL_001", "PVL_002", "PVL_003"]
    assert spec.clinical is not None and spec.kspace is not None
    assert training_case_ids(spec, "imagesTs") == ["PVL_004"]
    assert not (cohort / "labelsTr" / "PVL_004.nii.gz").exists()


def test_labels_are_tissue_and_lesion_on_the_image_grid(cohort):
    for case in ("PVL_001", "PVL_002", "PVL_003"):
        image = nib.load(cohort / "imagesTr" / f"{case}_0000.nii.gz")
        label = nib.load(cohort / "labelsTr" / f"{case}.nii.gz")
        assert label.shape == image.shape and np.allclose(label.affine, image.affine)
        values = np.asarray(label.dataobj)
        assert {0, 1, 2, 3} <= set(np.unique(values).tolist()) <= {0, 1, 2, 3, 4}  # 3 mm: lesions may vanish
        assert label.get_data_dtype() == np.uint8 and image.get_data_dtype() == np.int16
        tissues = np.asarray(nib.load(cohort / "groundtruth" / f"{case}_tissues.nii.gz").dataobj)
        fraction = np.asarray(nib.load(cohort / "groundtruth" / f"{case}_lesions.nii.gz").dataobj)
        assert np.array_equal(values == 4, fraction >= 0.5)  # the lesion-only cohort's lesion voxels
        for name, value in (("csf", 1), ("gm", 2)):
            assert np.array_equal(values == value, tissues == TISSUE_LABELS[name])
        mostly_lesion = (tissues == TISSUE_LABELS["lesion"]) & (fraction < 0.5)  # under half: white matter
        assert np.array_equal(values == 3, (tissues == TISSUE_LABELS["wm"]) | mostly_lesion)
        assert not np.isin(values[np.isin(tissues, [5, 6])], [1, 2, 3, 4]).any()  # skull, scalp: background
        for name in ("brain", "tissues", "lesions"):
            truth = nib.load(cohort / "groundtruth" / f"{case}_{name}.nii.gz")
            assert truth.shape == image.shape and np.allclose(truth.affine, image.affine)


def test_clinical_table_has_one_row_per_training_case(cohort):
    rows = list(csv.DictReader((cohort / "clinical.csv").read_text().splitlines()))
    assert [r["case_id"] for r in rows] == ["PVL_001", "PVL_002", "PVL_003"]
    assert {r["hand_function"] for r in rows} <= {"good", "impaired"}
    assert all(18 <= int(r["age"]) <= 75 and r["sex"] in {"F", "M"} for r in rows)


def test_generator_json_records_every_subject_and_the_model(cohort, generator):
    assert generator["options"]["seed"] == 0 and generator["options"]["spacing"] == [3.0, 3.0, 3.0]
    assert [c["case_id"] for c in generator["cases"]] == ["PVL_001", "PVL_002", "PVL_003", "PVL_004"]
    model = generator["hand_function"]
    assert model["slope_per_ml"] == SLOPE_PER_ML and model["load_at_half_ml"] == LOAD_AT_HALF_ML
    assert set(model["probabilities"]) == {"PVL_001", "PVL_002", "PVL_003", "PVL_004"}
    assert 0.5 <= model["expected_bayes_accuracy"] <= 1.0
    for case in generator["cases"]:
        params = case["parameters"]
        assert {"pose", "deformation", "head", "lesions", "acquisition", "appearances", "kspace"} <= set(params)
        assert 0 <= case["hand_function"]["probability"] <= 1
        assert len(case["kspace"]["coil_geometry"]["positions_mm"]) == OPTIONS.coils
        assert (cohort / "groundtruth" / f"{case['case_id']}_pose.json").is_file()
    assert (cohort / "groundtruth" / generator["template"]["motor_region"]).is_file()


def test_hand_function_labels_take_both_values_over_a_few_subjects():
    spec, template = SynthOptions().subject_spec(), load_template()
    labels = set()
    for index in range(10):
        lesions = rasterize_lesions(sample_subject(0, index, spec).lesions, template)
        load = lesions.volume_ml(template, template.motor)
        labels.add(hand_function(stream(0, index, "hand_function"), load).impaired)
    assert labels == {True, False}


def test_options_are_validated():
    from autopipe.errors import AutopipeError

    with pytest.raises(AutopipeError, match="orientation"):
        SynthOptions(orientation="RAX")
    with pytest.raises(AutopipeError, match="mask_type"):
        SynthOptions(mask_type="spiral")
    with pytest.raises(AutopipeError, match="channels"):
        SynthOptions(channels=("T1",))


def test_recorded_parameters_rebuild_each_subject(generator):
    from autopipe.synth.groundtruth import from_plain
    from autopipe.synth.subject import SubjectParams

    for record in generator["cases"]:
        rebuilt = from_plain(SubjectParams, record["parameters"])
        assert rebuilt == sample_subject(OPTIONS.seed, record["case_index"], OPTIONS.subject_spec())
