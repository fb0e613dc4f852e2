"""`autopipe import` from BIDS: file-name parsing, the selection rule, and whole imports of tiny BIDS datasets."""

from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from autopipe.cli import main
from autopipe.cohort.bids_names import choose, naming_problem, parse_bids_name
from autopipe.cohort.check import check_cohort
from autopipe.cohort.dataset import CHANNEL_FILE, load_dataset, training_case_ids
from autopipe.cohort.import_bids import _Case, _drop_collisions, case_id, is_lesion_mask
from autopipe.cohort.import_records import identities_path
from autopipe.cohort.importing import ImportOptions, run_import
from autopipe.errors import AutopipeError
from autopipe.plan.splits import make_splits
from tests.tiny_cohort import tree_digest

SHAPE = (12, 14, 10)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
AFFINE[:3, 3] = [-12.0, -14.0, -10.0]
PARTICIPANTS = ("participant_id\tage\thand\tsite\n"
                "sub-01\t34\timpaired\tA\n"
                "sub-02\tn/a\tgood\tB\n"
                "sub-03\t51\tn/a\tA\n"
                "sub-06\t40\tgood\tB\n")


# --- file names and the selection rule (pure functions) -------------------------------------------------------------

def test_parse_bids_name_reads_entities_suffix_and_extension() -> None:
    name = parse_bids_name("sub-01_ses-pre_acq-3D_run-2_FLAIR.nii.gz")
    assert name is not None
    assert name.entities == {"sub": "01", "ses": "pre", "acq": "3D", "run": "2"}
    assert (name.sub, name.ses, name.run, name.suffix, name.extension) == ("01", "pre", 2, "FLAIR", ".nii.gz")
    plain = parse_bids_name("sub-A1_T1w.nii")
    assert plain is not None and plain.ses is None and plain.run == 0 and plain.extension == ".nii"
    assert parse_bids_name("sub-01_ses-01_desc-lesion_mask.nii.gz").entities["desc"] == "lesion"


@pytest.mark.parametrize("name, why", [
    ("sub-01_FLAIR_old.nii.gz", "not named like"),      # a suffix in the middle
    ("FLAIR.nii.gz", "not named like"),                 # no entities
    ("sub-01_FLAIR", "not named like"),                 # no extension
    ("ses-01_sub-01_FLAIR.nii.gz", "starts with sub-"),
    ("sub-01_run-a_FLAIR.nii.gz", "takes a number"),
    ("sub-01-b_FLAIR.nii.gz", "letters and digits only"),
    ("sub-01_acq-_FLAIR.nii.gz", "letters and digits only"),
    ("sub-01_run-1_run-2_FLAIR.nii.gz", "appears twice"),
])
def test_names_breaking_bids_naming_are_refused_with_why(name: str, why: str) -> None:
    assert parse_bids_name(name) is None
    assert why in naming_problem(name)


def test_selection_rule_prefers_plain_then_highest_run_then_nii_gz() -> None:
    names = [parse_bids_name(n) for n in ("sub-01_acq-fast_FLAIR.nii.gz", "sub-01_run-1_FLAIR.nii.gz",
                                          "sub-01_FLAIR.nii.gz", "sub-01_run-2_FLAIR.nii", "sub-01_run-2_FLAIR.nii.gz",
                                          "sub-01_rec-norm_run-3_FLAIR.nii.gz")]
    chosen, others = choose(names)
    assert chosen.name == "sub-01_run-2_FLAIR.nii.gz"
    assert [o.name for o in others] == ["sub-01_run-2_FLAIR.nii", "sub-01_run-1_FLAIR.nii.gz", "sub-01_FLAIR.nii.gz",
                                        "sub-01_rec-norm_run-3_FLAIR.nii.gz", "sub-01_acq-fast_FLAIR.nii.gz"]
    assert choose([parse_bids_name("sub-01_acq-b_T1w.nii.gz"), parse_bids_name("sub-01_acq-a_T1w.nii.gz")])[0].name \
        == "sub-01_acq-a_T1w.nii.gz"


def test_case_ids_carry_subject_and_session_and_fit_the_channel_file_pattern() -> None:
    assert case_id("01", "02") == "sub01_ses02"
    assert case_id("01", None) == "sub01"
    match = CHANNEL_FILE.match(f"{case_id('01', '2020')}_0001")
    assert match and match["case"] == "sub01_ses2020" and match["channel"] == "0001"


def test_lesion_mask_names() -> None:
    def mask(name: str) -> bool:
        return is_lesion_mask(parse_bids_name(name), "lesion")

    assert mask("sub-01_desc-lesion_mask.nii.gz")
    assert mask("sub-01_ses-1_space-orig_desc-lesion_mask.nii")
    assert mask("sub-01_label-lesion_mask.nii.gz")
    assert mask("sub-01_desc-lesion_dseg.nii.gz")
    assert not mask("sub-01_desc-brain_mask.nii.gz")
    assert not mask("sub-01_label-lesion_dseg.nii.gz")
    assert not mask("sub-01_desc-lesion_mask.json")
    assert is_lesion_mask(parse_bids_name("sub-01_desc-wmh_mask.nii.gz"), "wmh")


def test_case_ids_differing_only_in_letter_case_keep_the_first() -> None:
    cases = [_Case("A", None, [], None), _Case("a", None, [], None), _Case("B", "x", [], None)]
    skipped = []
    assert [c.case_id for c in _drop_collisions(cases, skipped)] == ["subA", "subB_sesx"]
    assert skipped[0].what == "sub-a" and "only in letter case" in skipped[0].why


# --- whole imports ---------------------------------------------------------------------------------------------------

def _image(path: Path, seed: int, shape: tuple[int, ...] = SHAPE, affine: np.ndarray = AFFINE,
           data: np.ndarray | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = (100 + np.random.default_rng(seed).normal(0, 10, shape)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, affine), str(path))


def _mask(path: Path, values: tuple[int, ...] = (1,), shape: tuple[int, ...] = SHAPE) -> None:
    data = np.zeros(shape, np.uint8)
    for i, value in enumerate(values):
        data[4 + i, 5:8, 4:6] = value
    _image(path, 0, shape=shape, data=data)


def make_bids(root: Path) -> Path:
    """sub-01 (2 sessions, masks), sub-02 (run-1/run-2 FLAIR, mask), sub-03 (.nii T1w, mask on another grid),
    sub-04 (no FLAIR), sub-05 (no T1w), sub-06 (a dseg mask with value 2), a misnamed file."""
    (root / "dataset_description.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text('{"Name": "tiny", "BIDSVersion": "1.9.0"}')
    (root / "participants.tsv").write_text(PARTICIPANTS)
    lesions = root / "derivatives" / "lesions"
    for i, ses in enumerate(("01", "02")):
        anat = root / "sub-01" / f"ses-{ses}" / "anat"
        _image(anat / f"sub-01_ses-{ses}_FLAIR.nii.gz", 10 + i)
        _image(anat / f"sub-01_ses-{ses}_T1w.nii.gz", 20 + i)
        (anat / f"sub-01_ses-{ses}_T1w.json").write_text("{}")
        _mask(lesions / "sub-01" / f"ses-{ses}" / "anat" / f"sub-01_ses-{ses}_desc-lesion_mask.nii.gz")
    (root / "sub-01" / "ses-01" / "anat" / "sub-01_ses-01_FLAIR_old.nii.gz").write_bytes(b"x")
    anat = root / "sub-02" / "anat"
    _image(anat / "sub-02_run-1_FLAIR.nii.gz", 30)
    _image(anat / "sub-02_run-2_FLAIR.nii.gz", 31)
    _image(anat / "sub-02_T1w.nii.gz", 32)
    _image(anat / "sub-02_T2w.nii.gz", 33)  # an unknown suffix: ignored
    _mask(lesions / "sub-02" / "anat" / "sub-02_label-lesion_mask.nii.gz", values=(1, 1))
    anat = root / "sub-03" / "anat"
    _image(anat / "sub-03_FLAIR.nii.gz", 40)
    _image(anat / "sub-03_T1w.nii", 41)
    _mask(lesions / "sub-03" / "anat" / "sub-03_desc-lesion_mask.nii.gz", shape=(12, 14, 11))
    _image(root / "sub-04" / "anat" / "sub-04_T1w.nii.gz", 50)
    _image(root / "sub-05" / "anat" / "sub-05_FLAIR.nii.gz", 60)
    anat = root / "sub-06" / "anat"
    _image(anat / "sub-06_FLAIR.nii.gz", 70)
    _image(anat / "sub-06_T1w.nii.gz", 71)
    _mask(root / "derivatives" / "seg" / "sub-06" / "anat" / "sub-06_desc-lesion_dseg.nii.gz", values=(1, 2))
    return root


@pytest.fixture(scope="module")
def bids(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bids(tmp_path_factory.mktemp("bids") / "study")


@pytest.fixture
def quiet_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """main() keeps its cache under ./results and sets MPLCONFIGDIR: both into the test's folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))


def test_import_writes_a_cohort_that_passes_check(bids: Path, tmp_path: Path, quiet_cli: None) -> None:
    before = tree_digest(bids)
    raw = tmp_path / "raw_data"
    status = main(["import", str(bids), "Dataset060_Bids", "--raw-dir", str(raw), "--channels", "FLAIR,T1w",
                   "--hand-column", "hand", "-q"])
    assert status == 0
    assert tree_digest(bids) == before  # the source is only read
    cohort = raw / "Dataset060_Bids"
    assert not any(p.name.startswith(".tmp_") for p in raw.iterdir())
    umask = os.umask(0)
    os.umask(umask)
    assert cohort.stat().st_mode & 0o777 == 0o777 & ~umask  # not left private like the scratch folder it was

    spec = load_dataset(cohort)
    assert spec.channel_names == {0: "FLAIR", 1: "T1w"}
    assert spec.labels == {"background": 0, "lesion": 1} and spec.num_training == 3 and spec.file_ending == ".nii.gz"
    training = ["sub01_ses01", "sub01_ses02", "sub02"]
    assert training_case_ids(spec) == training
    assert training_case_ids(spec, "imagesTs") == ["sub03", "sub06"]
    assert sorted(p.name for p in (cohort / "labelsTr").iterdir()) == [f"{c}.nii.gz" for c in training]
    assert spec.raw["patients"] == {"sub01_ses01": "01", "sub01_ses02": "01", "sub02": "02", "sub03": "03",
                                    "sub06": "06"}
    folds, _ = make_splits(training, None, spec.raw["patients"])
    assert all({"sub01_ses01", "sub01_ses02"} <= set(fold["val"]) or not {"sub01_ses01", "sub01_ses02"} &
               set(fold["val"]) for fold in folds)

    # copies, byte for byte: the chosen run-2 FLAIR, the mask; a .nii gzipped with its bytes unchanged
    assert (cohort / "imagesTr/sub02_0000.nii.gz").read_bytes() == \
        (bids / "sub-02/anat/sub-02_run-2_FLAIR.nii.gz").read_bytes()
    assert (cohort / "labelsTr/sub02.nii.gz").read_bytes() == \
        (bids / "derivatives/lesions/sub-02/anat/sub-02_label-lesion_mask.nii.gz").read_bytes()
    assert gzip.decompress((cohort / "imagesTs/sub03_0001.nii.gz").read_bytes()) == \
        (bids / "sub-03/anat/sub-03_T1w.nii").read_bytes()
    assert not any(p.is_symlink() for p in cohort.rglob("*"))

    assert spec.clinical is not None
    assert (spec.clinical.file, spec.clinical.case_column, spec.clinical.target_column) == \
        ("clinical.csv", "case_id", "hand")
    with (cohort / "clinical.csv").open() as stream:
        rows = list(csv.reader(stream))
    assert rows == [["case_id", "age", "hand", "site"], ["sub01_ses01", "34", "impaired", "A"],
                    ["sub01_ses02", "34", "impaired", "A"], ["sub02", "", "good", "B"]]

    sources = json.loads((cohort / "import_sources.json").read_text())
    assert sources["source_kind"] == "bids" and sources["source"] == str(bids.resolve())
    assert sources["cases"]["sub01_ses02"] == {"bids": {"sub": "01", "ses": "02"}}
    assert sources["cases"]["sub02"] == {"bids": {"sub": "02"}}
    identities = identities_path(cohort)
    assert identities.parent == raw and identities.is_file()
    assert not any("identities" in p.name for p in cohort.rglob("*"))
    assert json.loads(identities.read_text())["sub01_ses01"] == {"participant_id": "sub-01"}

    report = json.loads((cohort / "import_report.json").read_text())
    skipped = {s["what"]: s["why"] for s in report["skipped"]}
    assert "no FLAIR image in anat/" in skipped["sub-04"]
    assert "no T1w image in anat/ (channel 1" in skipped["sub-05"]
    assert "not used: sub-02_run-2_FLAIR.nii.gz was chosen" in skipped["sub-02/anat/sub-02_run-1_FLAIR.nii.gz"]
    assert "not named like" in skipped["sub-01/ses-01/anat/sub-01_ses-01_FLAIR_old.nii.gz"]
    assert "not on the grid" in skipped["derivatives/lesions/sub-03/anat/sub-03_desc-lesion_mask.nii.gz"]
    assert "shape 12x14x11" in skipped["derivatives/lesions/sub-03/anat/sub-03_desc-lesion_mask.nii.gz"]
    assert "values other than 0 and 1 (2)" in skipped["derivatives/seg/sub-06/anat/sub-06_desc-lesion_dseg.nii.gz"]
    assert not any("T2w" in what or what.endswith(".json") for what in skipped)  # unknown suffixes: ignored
    assert len(skipped) == 6
    assert [p for p in check_cohort(cohort, progress=False) if p.severity == "error"] == []


def test_images_only_writes_plain_images_and_records(bids: Path, tmp_path: Path) -> None:
    out = tmp_path / "new_patients"
    result = run_import(bids, out, ImportOptions(images_only=True, channels=("FLAIR",), hand_column="hand",
                                                 progress=False))
    names = sorted(p.name for p in out.iterdir())
    assert names == ["import_report.json", "import_sources.json", "sub01_ses01_0000.nii.gz",
                     "sub01_ses02_0000.nii.gz", "sub02_0000.nii.gz", "sub03_0000.nii.gz", "sub05_0000.nii.gz",
                     "sub06_0000.nii.gz"]
    assert all(c.label is None for c in result.cases)
    assert identities_path(out).is_file()


def test_no_mask_without_images_only_is_refused(bids: Path, tmp_path: Path) -> None:
    with pytest.raises(AutopipeError, match="--images-only") as caught:
        run_import(bids, tmp_path / "Dataset061_X", ImportOptions(channels=("FLAIR",), lesion_desc="wmh",
                                                                  progress=False))
    assert "no" in caught.value.what and "lesion mask" in caught.value.what
    assert not (tmp_path / "Dataset061_X").exists()
    assert not any(tmp_path.iterdir())  # no scratch folder left either


def test_hand_column_must_exist_in_participants(bids: Path, tmp_path: Path) -> None:
    with pytest.raises(AutopipeError) as caught:
        run_import(bids, tmp_path / "Dataset062_X", ImportOptions(channels=("FLAIR",), hand_column="grip",
                                                                  progress=False))
    assert "'grip' not found" in caught.value.what and "age, hand, site" in caught.value.what


def test_unknown_hand_values_are_refused_before_copying(bids: Path, tmp_path: Path) -> None:
    source = Path(shutil.copytree(bids, tmp_path / "copy"))
    (source / "participants.tsv").write_text(PARTICIPANTS.replace("impaired", "left"))
    with pytest.raises(AutopipeError, match="sub-01: 'left'"):
        run_import(source, tmp_path / "Dataset063_X", ImportOptions(channels=("FLAIR",), hand_column="hand",
                                                                    progress=False))
    assert not (tmp_path / "Dataset063_X").exists()


def test_unusable_cases_and_autopipe_predictions_are_skipped(tmp_path: Path) -> None:
    """sub-02's T1w lies on another grid of the same field of view: resampled onto its FLAIR's (a linear ramp stays
    a ramp); sub-04's T1w lies elsewhere (another position): skipped; sub-03 is unreadable."""
    source = tmp_path / "study"
    shifted = AFFINE.copy()
    shifted[:3, 3] += 200.0
    ramp = np.broadcast_to(np.arange(SHAPE[2], dtype=np.float32) * 2.0, SHAPE).copy()  # world z (mm) + 10
    thick = AFFINE @ np.diag([1.0, 1.0, 2.0, 1.0])  # 4 mm slices over the same origin
    thick_ramp = np.broadcast_to(np.arange(SHAPE[2], dtype=np.float32) * 4.0, SHAPE).copy()
    for sub, affine, t1 in (("01", AFFINE, None), ("02", thick, thick_ramp), ("04", shifted, None)):
        _image(source / f"sub-{sub}" / "anat" / f"sub-{sub}_FLAIR.nii.gz", 1)
        _image(source / f"sub-{sub}" / "anat" / f"sub-{sub}_T1w.nii.gz", 2, affine=affine, data=t1)
        _mask(source / "derivatives" / "m" / f"sub-{sub}" / "anat" / f"sub-{sub}_desc-lesion_mask.nii.gz")
    own = source / "derivatives" / "autopipe"  # autopipe's predictions: never labels
    _mask(own / "sub-02" / "anat" / "sub-02_space-orig_desc-lesion_mask.nii.gz")
    (own / "dataset_description.json").write_text('{"Name": "x", "GeneratedBy": [{"Name": "autopipe"}]}')
    (source / "sub-03" / "anat").mkdir(parents=True)
    (source / "sub-03" / "anat" / "sub-03_FLAIR.nii.gz").write_bytes(b"not an image")
    _image(source / "sub-03" / "anat" / "sub-03_T1w.nii.gz", 3)
    result = run_import(source, tmp_path / "Dataset064_X", ImportOptions(channels=("FLAIR", "T1w"), progress=False))
    assert [c.case_id for c in result.cases] == ["sub01", "sub02"]
    assert "channel 1 resampled onto channel 0's grid" in result.cases[1].came_from
    t1 = nib.load(tmp_path / "Dataset064_X" / "imagesTr" / "sub02_0001.nii.gz")
    assert np.allclose(t1.affine, AFFINE) and t1.shape == SHAPE
    inside = slice(0, 2 * ((SHAPE[2] - 1) // 2) + 1)  # within the thick grid's last slice centre
    assert np.allclose(np.asarray(t1.dataobj)[:, :, inside], ramp[:, :, inside], atol=1e-3)
    why = {s.what: s.why for s in result.skipped}
    assert "sub-04_T1w.nii.gz covers only 0% of sub-04_FLAIR.nii.gz's field of view" in why["sub-04"]
    assert "cannot be read as an image" in why["sub-03/anat/sub-03_FLAIR.nii.gz"]
    assert "autopipe's own predictions" in why["derivatives/autopipe"]
    assert "no case imported for sub-04" in why["derivatives/m/sub-04/anat/sub-04_desc-lesion_mask.nii.gz"]
