"""`autopipe import` from DICOM: geometry and rules as pure functions, then a synthetic DICOM tree (2 patients,
3 studies, FLAIR + T1 + localizer, broken series, DICOM SEG masks) imported end to end and checked."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from autopipe.cli import main
from autopipe.cohort.dicom_series import (
    IMAGE,
    MULTIFRAME,
    NO_GEOMETRY,
    NOT_IMAGE,
    DicomFile,
    Series,
    header_of,
    read_header,
    scan_headers,
    series_affine,
    series_problem,
    sort_slices,
)
from autopipe.cohort.import_dicom import (
    Channel,
    choose_channels,
    make_studies,
    print_rules,
    seg_mask,
    series_skip_reason,
)
from autopipe.cohort.import_records import identities_path
from autopipe.cohort.importing import ImportOptions, run_import
from autopipe.cohort.sequence_rules import DEFAULT_RULES, choice_key, compile_rules, match_series, rule_name, rules_json
from autopipe.errors import AutopipeError
from tests.dicom_fixtures import (
    ENHANCED_MR,
    Patient,
    SeriesSpec,
    lesion_mask,
    slice_dataset,
    volume,
    write_enhanced,
    write_localizer,
    write_seg,
    write_series,
)

CHANNELS = ("FLAIR", "T1w")
ALPHA = Patient("PID-ALPHA-7", "Doe^Jane", "20240110")
ALPHA_LATER = Patient("PID-ALPHA-7", "Doe^Jane", "20240601", frame_of_reference=ALPHA.frame_of_reference)
BETA = Patient("PID-BETA-3", "Roe^Richard", "20230305")
SHAPE = (20, 24, 10)


# ---------------------------------------------------------------- geometry, pure


def _slices(n: int = 4, orientation=(1, 0, 0, 0, 1, 0), step=(0, 0, 2.0), origin=(10.0, 20.0, 30.0),
            spacing=(0.5, 0.8), size=(6, 5)) -> list[DicomFile]:
    return [DicomFile(f"f{k}", IMAGE, sop_instance_uid=f"1.{k}", series_uid="9", rows=size[0], columns=size[1],
                      position=tuple(np.add(origin, np.multiply(step, k))), orientation=tuple(orientation),
                      pixel_spacing=spacing, instance_number=k + 1) for k in range(n)]


def test_series_affine_is_the_headers_geometry_in_ras():
    """Columns: row direction x column spacing, column direction x row spacing, slice step; LPS -> RAS."""
    files = _slices(orientation=(0, 1, 0, 0, 0, -1), step=(1.5, 0, 0))  # sagittal; the normal points to -x (R)
    affine = series_affine(sort_slices(files))  # so the slice at x = 14.5 (LPS) comes first
    expected = np.array([[0, 0, 1.5, -14.5], [-0.8, 0, 0, -20], [0, -0.5, 0, 30], [0, 0, 0, 1]])
    assert np.allclose(affine, expected)


def test_slices_sort_along_the_normal_whatever_the_file_order():
    files = _slices(5)
    assert [f.path for f in sort_slices([files[3], files[0], files[4], files[1], files[2]])] == [f"f{k}" for k in
                                                                                                  range(5)]


def test_series_problems_are_named():
    regular = _slices(6)
    assert series_problem(regular) is None
    assert "single image (2D)" in series_problem(regular[:1])
    tilted = regular[:3] + [dataclasses.replace(regular[3], orientation=(1, 0, 0, 0, 0.8, 0.6))] + regular[4:]
    assert "mixed orientations" in series_problem(tilted)
    assert "mixed image sizes" in series_problem(regular[:5] + [dataclasses.replace(regular[5], rows=7)])
    assert "missing between slices 2 and 3" in series_problem(regular[:2] + regular[3:])
    renumbered = [dataclasses.replace(f, instance_number=f.instance_number + (f.instance_number > 3)) for f in regular]
    assert "InstanceNumber jumps from 3 to 5" in series_problem(renumbered)
    assert "same position" in series_problem(regular + [dataclasses.replace(regular[2], path="echo2")])
    uneven = [dataclasses.replace(f, position=(10, 20, 30 + 2 * k + 0.3 * (k == 5))) for k, f in enumerate(regular)]
    assert "uneven slice spacing" in series_problem(uneven)
    sheared = [dataclasses.replace(f, position=(10 + 0.5 * k, 20, 30 + 2 * k)) for k, f in enumerate(regular)]
    assert "do not line up" in series_problem(sheared)


def test_headers_say_what_kind_of_object_a_file_is():
    spec = SeriesSpec("x", 1, volume((4, 5, 2)))
    assert header_of(slice_dataset(ALPHA, spec, 0), "a").kind == IMAGE
    capture = slice_dataset(ALPHA, spec, 0)
    del capture.ImagePositionPatient
    assert header_of(capture, "b").kind == NO_GEOMETRY
    enhanced = slice_dataset(ALPHA, spec, 0)
    enhanced.SOPClassUID = ENHANCED_MR
    assert header_of(enhanced, "c").kind == MULTIFRAME
    report = slice_dataset(ALPHA, spec, 0)
    report.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    del report.Rows
    assert header_of(report, "d").kind == NOT_IMAGE
    reasons = [series_skip_reason(Series("1", [header_of(ds, "e")])) for ds in (capture, enhanced, report)]
    assert "secondary capture" in reasons[0] and "not supported yet" in reasons[1]
    assert reasons[2] == "not an image (Basic Text SR Storage)"


# ---------------------------------------------------------------- rules, pure


@pytest.fixture(scope="module")
def rules():
    return compile_rules(rules_json(None), ("FLAIR", "T1"), "the default rules")


@pytest.mark.parametrize(("description", "channel"), [
    ("AX FLAIR", 0), ("t2_tirm_tra_dark-fluid", 0), ("Sag 3D FLAIR fs", 0), ("T1 MPRAGE", 1), ("sT1W_3D_TFE", 1),
    ("T1 FLAIR AX", 1), ("T1 MPRAGE POST GD", None), ("3-plane localizer", None), ("AX T2 TSE", None), ("", None),
])
def test_rules_map_descriptions_to_channels(rules, description, channel):
    assert match_series({"SeriesDescription": description}, ("ORIGINAL", "PRIMARY"), rules).channel == channel


def test_rules_say_why(rules):
    assert "LOCALIZER" in match_series({"SeriesDescription": "AX FLAIR"}, ("ORIGINAL", "LOCALIZER"), rules).why
    assert "excluded" in match_series({"SeriesDescription": "FLAIR scout"}, (), rules).why
    assert match_series({"SeriesDescription": "DWI", "ProtocolName": "DWI"}, (), rules).why == (
        "matches the rule of no channel asked (FLAIR, T1w): DWI")
    both = compile_rules({"channels": {"A": {"match": ["x"]}, "B": {"match": ["x"]}}}, ("A", "B"), "test")
    assert "ambiguous" in match_series({"SeriesDescription": "x"}, (), both).why


def test_rule_names_and_choice():
    assert rule_name("t1", DEFAULT_RULES["channels"]) == "T1w"
    assert rule_name("flair", DEFAULT_RULES["channels"]) == "FLAIR"
    assert rule_name("SWI", DEFAULT_RULES["channels"]) is None
    candidates = [(10, 2.0, 3), (40, 1.0, 4), (40, 1.0, 7), (40, 3.0, 9)]
    assert min(candidates, key=lambda c: choice_key(*c)) == (40, 1.0, 7)


def test_rules_file_replaces_the_defaults_and_is_checked(tmp_path, capsys):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"channels": {"FLAIR": {"match": ["^ax dark$"]}}}))
    custom = compile_rules(rules_json(path), ("FLAIR",), str(path))
    assert match_series({"SeriesDescription": "AX dark"}, (), custom).channel == 0
    assert match_series({"SeriesDescription": "AX FLAIR"}, (), custom).channel is None
    for text, said in [("{", "not valid JSON"), ('{"channels": {}}', "non-empty"),
                       ('{"channels": {"FLAIR": {"match": ["("]}}}', "not valid")]:
        path.write_text(text)
        with pytest.raises(AutopipeError, match=said):
            compile_rules(rules_json(path), ("FLAIR",), str(path))
    with pytest.raises(AutopipeError, match="no rule for channel 'SWI'"):
        compile_rules(rules_json(None), ("SWI",), "the default rules")
    print_rules(None)
    assert json.loads(capsys.readouterr().out) == DEFAULT_RULES


# ---------------------------------------------------------------- a synthetic DICOM tree


@dataclasses.dataclass
class Tree:
    source: Path
    specs: dict[str, SeriesSpec]  # "<patient>/<study>/<kind>" -> spec
    slice_paths: dict[str, list[str]]  # same keys -> files relative to source, in slice order
    masks: dict[str, np.ndarray]  # study key -> lesion mask on its FLAIR grid


def _add(tree: Tree, key: str, folder: str, patient: Patient, spec: SeriesSpec, **kwargs) -> list[Path]:
    paths = write_series(tree.source / folder, patient, spec, **kwargs)
    tree.specs[key] = spec
    tree.slice_paths[key] = [p.relative_to(tree.source).as_posix() for p in paths]
    return paths


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Tree:
    """Patient Doe^Jane: study 1 (FLAIR + T1 on another grid + a thicker FLAIR + localizer + SEG), study 2
    (FLAIR + T1 on the same grid, no SEG). Patient Roe^Richard: FLAIR + T1 + localizer + SEG, and broken
    series: a FLAIR with a missing slice, a T1 with a tilted slice, an enhanced multi-frame file. Plus a text
    file and pydicom's single-slice MR_small.dcm. Folders are named after the patients, files have no ending."""
    from pydicom.data import get_testdata_file

    source = tmp_path_factory.mktemp("dicom") / "source"
    t = Tree(source, {}, {}, {})
    flair = _add(t, "a1/flair", "Doe_Jane/2024-01/s3", ALPHA, SeriesSpec("AX FLAIR", 3, volume(SHAPE, 1)))
    _add(t, "a1/t1", "Doe_Jane/2024-01/s5", ALPHA, SeriesSpec("T1 MPRAGE", 5, volume((22, 20, 12), 2),
                                                              spacing=(1.0, 1.1, 2.0), origin=(-9.0, -11.0, 29.0)))
    _add(t, "a1/thick", "Doe_Jane/2024-01/s4", ALPHA, SeriesSpec("FLAIR thick", 4, volume((20, 24, 5), 3),
                                                                 spacing=(1.0, 1.2, 5.0)))
    write_localizer(source / "Doe_Jane/2024-01/loc", ALPHA, 1)
    t.masks["a1"] = lesion_mask(SHAPE, 1)
    write_seg(source / "Doe_Jane/2024-01/seg/SEG1", flair, t.masks["a1"])
    _add(t, "a2/flair", "Doe_Jane/2024-06/a", ALPHA_LATER, SeriesSpec("FLAIR", 2, volume(SHAPE, 4), angle=-8.0))
    _add(t, "a2/t1", "Doe_Jane/2024-06/b", ALPHA_LATER, SeriesSpec("T1_3D", 6, volume(SHAPE, 5), angle=-8.0))
    flair = _add(t, "b1/flair", "Roe_Richard/x/1", BETA, SeriesSpec("Brain FLAIR", 2, volume(SHAPE, 6),
                                                                     spacing=(0.9, 0.9, 3.0), angle=30.0))
    _add(t, "b1/t1", "Roe_Richard/x/2", BETA, SeriesSpec("T1 SE", 4, volume(SHAPE, 7), spacing=(0.9, 0.9, 3.0),
                                                         angle=30.0))
    write_localizer(source / "Roe_Richard/x/loc", BETA, 1)
    t.masks["b1"] = lesion_mask(SHAPE, 2)
    write_seg(source / "Roe_Richard/x/seg.dcm", flair, t.masks["b1"])
    write_series(source / "Roe_Richard/x/7", BETA, SeriesSpec("FLAIR repeat", 7, volume(SHAPE, 8)), skip=(4,))
    write_series(source / "Roe_Richard/x/8", BETA, SeriesSpec("T1 tilted", 8, volume(SHAPE, 9)), tilted=(3,))
    write_enhanced(source / "Roe_Richard/x/9/MF.dcm", BETA, 9)
    (source / "README.txt").write_text("exported from PACS")
    (source / "other").mkdir()
    shutil.copy(get_testdata_file("MR_small.dcm"), source / "other" / "MR_small.dcm")
    return t


def _tree_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(path.relative_to(folder).as_posix().encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def imported(tree, tmp_path_factory):
    """The tree imported once (FLAIR, T1w), with the source's hash before."""
    before = _tree_hash(tree.source)
    destination = tmp_path_factory.mktemp("raw") / "Dataset050_Dicom"
    result = run_import(tree.source, destination, ImportOptions(channels=CHANNELS, progress=False))
    return result, destination, before


def _cases_by_study(destination: Path) -> dict[str, str]:
    """"a1" / "a2" / "b1" -> case id, through the private identities file."""
    identities = json.loads(identities_path(destination).read_text())
    keys = {(ALPHA.patient_id, "20240110"): "a1", (ALPHA.patient_id, "20240601"): "a2",
            (BETA.patient_id, "20230305"): "b1"}
    return {keys[(v["PatientID"], v["StudyDate"])]: case for case, v in identities.items()}


def test_import_writes_a_cohort_of_the_complete_studies(imported):
    result, destination, _ = imported
    cases = _cases_by_study(destination)
    assert sorted(cases) == ["a1", "a2", "b1"]
    dataset = json.loads((destination / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "FLAIR", "1": "T1w"} and dataset["numTraining"] == 2
    assert dataset["labels"] == {"background": 0, "lesion": 1} and dataset["file_ending"] == ".nii.gz"
    assert dataset["patients"] == {cases["a1"]: cases["a1"][:4], cases["b1"]: cases["b1"][:4]}
    for study in ("a1", "b1"):
        assert (destination / "labelsTr" / f"{cases[study]}.nii.gz").is_file()
        assert {p.name for p in (destination / "imagesTr").glob(f"{cases[study]}_*")} == {
            f"{cases[study]}_0000.nii.gz", f"{cases[study]}_0001.nii.gz"}
    assert sorted(p.name for p in (destination / "imagesTs").iterdir()) == [f"{cases['a2']}_0000.nii.gz",
                                                                           f"{cases['a2']}_0001.nii.gz"]
    # pseudonymous ids: one patient id for both of Doe^Jane's studies, numbered by date
    assert cases["a1"][:4] == cases["a2"][:4] != cases["b1"][:4]
    assert cases["a1"].endswith("_S1") and cases["a2"].endswith("_S2") and cases["b1"].endswith("_S1")
    assert {c.case_id: c.patient for c in result.cases}[cases["a2"]] == cases["a1"][:4]


def test_images_keep_the_exact_geometry_and_voxels(imported, tree):
    _, destination, _ = imported
    cases = _cases_by_study(destination)
    for study, folder in (("a1", "imagesTr"), ("a2", "imagesTs"), ("b1", "imagesTr")):
        spec = tree.specs[f"{study}/flair"]
        image = nib.load(destination / folder / f"{cases[study]}_0000.nii.gz")
        assert np.allclose(image.affine, spec.ras_affine(), atol=1e-4)
        assert np.array_equal(np.asarray(image.dataobj), spec.volume)
        t1 = nib.load(destination / folder / f"{cases[study]}_0001.nii.gz")
        assert np.allclose(t1.affine, spec.ras_affine(), atol=1e-4) and t1.shape == SHAPE
    same_grid = nib.load(destination / "imagesTs" / f"{cases['a2']}_0001.nii.gz")  # T1 on FLAIR's grid: unchanged
    assert np.array_equal(np.asarray(same_grid.dataobj), tree.specs["a2/t1"].volume)
    for study in ("a1", "b1"):
        label = nib.load(destination / "labelsTr" / f"{cases[study]}.nii.gz")
        assert label.get_data_dtype() == np.uint8
        assert np.allclose(label.affine, tree.specs[f"{study}/flair"].ras_affine(), atol=1e-4)
        assert np.array_equal(np.asarray(label.dataobj), tree.masks[study])


def test_resampled_channel_lies_where_the_source_voxels_were(imported, tree):
    """The T1 of study a1 lies on another grid: resampled onto FLAIR's, a voxel keeps its world position."""
    _, destination, _ = imported
    t1 = nib.load(destination / "imagesTr" / f"{_cases_by_study(destination)['a1']}_0001.nii.gz")
    spec = tree.specs["a1/t1"]
    source_voxel = np.linalg.solve(spec.ras_affine(), t1.affine @ [10, 12, 5, 1])[:3]
    i, j, k = np.floor(source_voxel).astype(int)
    near = spec.volume[i:i + 2, j:j + 2, k:k + 2]
    assert near.min() - 1 <= np.asarray(t1.dataobj)[10, 12, 5] <= near.max() + 1


def test_series_map_to_channels_and_broken_ones_are_skipped_with_why(imported, tree):
    result, destination, _ = imported
    cases = _cases_by_study(destination)
    table = "\n".join(result.notes)
    assert f"{cases['a1']} series 3 'AX FLAIR' (10 slices) -> FLAIR" in table
    assert f"{cases['a1']} series 5 'T1 MPRAGE' (12 slices) -> T1w" in table
    assert f"{cases['b1']} series 4 'T1 SE' (10 slices) -> T1w" in table
    why = {s.what: s.why for s in result.skipped}
    assert "was chosen (most slices" in why[f"{cases['a1']} series 4 'FLAIR thick'"]
    assert "LOCALIZER" in why[f"{cases['a1']} series 1 'localizer'"]
    assert "incomplete: about 1 slice(s) missing" in why[f"{cases['b1']} series 7 'FLAIR repeat'"]
    assert "mixed orientations" in why[f"{cases['b1']} series 8 'T1 tilted'"]
    assert "not supported yet" in why[f"{cases['b1']} series 9 'FLAIR 3D enhanced'"]
    assert "dcm2niix" in why[f"{cases['b1']} series 9 'FLAIR 3D enhanced'"]
    assert any("single image (2D)" in w for w in why.values())  # pydicom's MR_small.dcm
    assert any("not DICOM (README.txt)" in w for w in why)
    case = {c.case_id: c for c in result.cases}[cases["a1"]]
    assert "series 3 'AX FLAIR' + series 5 'T1 MPRAGE'" in case.came_from and "resampled" in case.came_from


def test_names_are_pseudonymous_and_identities_lie_beside_the_cohort(imported):
    result, destination, _ = imported
    private = [ALPHA.patient_id, BETA.patient_id, "Doe", "Jane", "Roe", "Richard"]
    written = [p.relative_to(destination.parent).as_posix() for p in destination.parent.rglob("*")]
    assert not [name for name in written for word in private if word.lower() in name.lower()]
    assert not [word for word in private if word in (destination / "dataset.json").read_text()]
    for name in ("import_sources.json", "import_report.json"):  # only the source's own paths may name people
        text = (destination / name).read_text()
        assert not [word for word in (ALPHA.patient_id, BETA.patient_id, "Doe^Jane", "Roe^Richard") if word in text]
    identities = identities_path(destination)
    assert identities.parent == destination.parent and identities.is_file()
    assert not list(destination.rglob("*identities*"))
    values = json.loads(identities.read_text())
    assert {v["PatientName"] for v in values.values()} == {"Doe^Jane", "Roe^Richard"}
    assert all({"PatientID", "StudyDate", "StudyInstanceUID", "AccessionNumber"} <= set(v) for v in values.values())


def test_import_sources_list_each_channels_series_files_in_slice_order(imported, tree):
    _, destination, _ = imported
    sources = json.loads((destination / "import_sources.json").read_text())
    assert sources["source_kind"] == "dicom" and Path(sources["source"]) == tree.source.resolve()
    for study, case in _cases_by_study(destination).items():
        channels = sources["cases"][case]["channels"]
        for index, kind in (("0", "flair"), ("1", "t1")):
            assert channels[index]["files"] == tree.slice_paths[f"{study}/{kind}"]
            assert channels[index]["series_instance_uid"] == tree.specs[f"{study}/{kind}"].uid


def test_the_source_is_not_written_to(imported, tree):
    assert _tree_hash(tree.source) == imported[2]


def test_import_is_deterministic(imported, tree, tmp_path):
    again = run_import(tree.source, tmp_path / "Dataset051_Again", ImportOptions(channels=CHANNELS, progress=False))
    assert {c.case_id: c.identity for c in again.cases} == {c.case_id: c.identity for c in imported[0].cases}


def test_seg_frames_map_by_position_when_they_reference_other_instances(tree):
    """A SEG drawn on a copy of the series (other SOP instance UIDs) still lands on the right slices."""
    files = [read_header(tree.source / p, p) for p in tree.slice_paths["b1/flair"]]
    copies = [dataclasses.replace(f, sop_instance_uid=f"2.25.{k}") for k, f in enumerate(files)]
    channel = Channel(Series(files[0].series_uid, copies), copies, series_affine(copies))
    mask = seg_mask(tree.source / "Roe_Richard/x/seg.dcm", channel)
    assert mask.dtype == np.uint8 and np.array_equal(mask, tree.masks["b1"])
    assert np.array_equal(seg_mask(tree.source / "Roe_Richard/x/seg.dcm", dataclasses.replace(
        channel, slices=files)), tree.masks["b1"])


def test_cli_imports_and_checks_the_cohort(tree, tmp_path, capsys):
    code = main(["import", str(tree.source), "Dataset050_Dicom", "--raw-dir", str(tmp_path / "raw_data"),
                 "--channels", "FLAIR,T1w", "-q"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "series -> channel" in out and "autopipe check Dataset050_Dicom: 0 error(s)" in out


def test_cli_shows_the_rules(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["import", "nowhere", "Dataset1_X", "--show-rules"]) == 0
    assert json.loads(capsys.readouterr().out) == DEFAULT_RULES
    assert not list(tmp_path.iterdir())


def test_images_only_writes_plain_images(tree, tmp_path):
    destination = tmp_path / "new_patients"
    result = run_import(tree.source, destination, ImportOptions(channels=("FLAIR",), images_only=True,
                                                                progress=False))
    names = sorted(p.name for p in destination.iterdir())
    assert names == sorted([f"{c.case_id}_0000.nii.gz" for c in result.cases] + ["import_report.json",
                                                                                 "import_sources.json"])
    assert len(result.cases) == 3 and all(c.label is None for c in result.cases)
    assert any("not imported with --images-only" in s.why for s in result.skipped)


def test_no_masks_without_images_only_is_an_error(tree, tmp_path):
    source = tmp_path / "no_masks"
    shutil.copytree(tree.source / "Doe_Jane" / "2024-06", source)
    with pytest.raises(AutopipeError, match="--images-only") as info:
        run_import(source, tmp_path / "Dataset052_NoMasks", ImportOptions(channels=CHANNELS, progress=False))
    assert "lesion mask" in info.value.what
    assert not (tmp_path / "Dataset052_NoMasks").exists() and not list(tmp_path.glob(".tmp_*"))


def test_nothing_usable_is_an_error_that_says_why(tree, tmp_path):
    source = tmp_path / "broken"
    shutil.copytree(tree.source / "Roe_Richard" / "x" / "7", source / "7")
    shutil.copytree(tree.source / "Roe_Richard" / "x" / "9", source / "9")
    with pytest.raises(AutopipeError, match="missing"):
        run_import(source, tmp_path / "Dataset053_Broken", ImportOptions(channels=("FLAIR",), progress=False))


def test_channels_in_another_frame_of_reference_are_not_resampled(tmp_path):
    source = tmp_path / "source"
    patient = Patient("PID-GAMMA", "Poe^Edgar", "20240101")
    write_series(source / "f", patient, SeriesSpec("FLAIR", 1, volume(SHAPE, 1)))
    moved = dataclasses.replace(patient, frame_of_reference="1.2.3.4")
    write_series(source / "t", moved, SeriesSpec("T1", 2, volume(SHAPE, 2), origin=(0.0, 0.0, 0.0)))
    with pytest.raises(AutopipeError, match="another frame of reference"):
        run_import(source, tmp_path / "out", ImportOptions(channels=CHANNELS, images_only=True, progress=False))


# ---------------------------------------------------------------- pydicom's real test files


def test_real_files_read_without_crashing(tmp_path):
    """Every local pydicom test file goes through the header reader: a real single MR slice is a 2D series."""
    import pydicom.data

    folder = Path(pydicom.data.__file__).parent / "test_files"
    files = sorted(p for p in folder.iterdir() if p.is_file())
    assert files
    scan = scan_headers(folder, progress=False)
    assert len(scan.files) + len(scan.not_dicom) + len(scan.unreadable) == len(
        [p for p in folder.rglob("*") if p.is_file()])
    kinds = {Path(f.path).name: f.kind for f in scan.files}
    assert kinds["MR_small.dcm"] == IMAGE and kinds.get("rtplan.dcm", NOT_IMAGE) == NOT_IMAGE
    header = read_header(folder / "MR_small.dcm", "MR_small.dcm")
    studies = make_studies([Series(header.series_uid, [header])])
    skipped = choose_channels(studies[0], compile_rules(rules_json(None), ("FLAIR",), "x"), ("FLAIR",), [])
    assert "single image (2D)" in skipped[0].why
