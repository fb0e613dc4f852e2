"""--bids: file names, folders and required metadata as the BIDS validator checks them for a derivative dataset."""

import fnmatch
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from autopipe import __version__
from autopipe.errors import AutopipeError
from autopipe.predict.bids_derivatives import (
    bids_entities,
    provenance,
    write_case,
    write_dataset_description,
)
from autopipe.predict.import_sources import find_import_sources

LABEL = r"[a-zA-Z0-9]+"
DERIVATIVE = re.compile(rf"^sub-(?P<sub>{LABEL})/(?:ses-(?P<ses>{LABEL})/)?anat/sub-(?P=sub)(?:_ses-(?P=ses))?"
                        rf"_space-{LABEL}(?:_label-{LABEL})?(?:_desc-{LABEL})?_(?:mask|probseg)\.nii\.gz$")


def check_bids_derivative(folder: Path, input_dir: Path) -> list[str]:
    """What the BIDS validator requires of a derivative dataset, as far as autopipe writes one; returns the
    NIfTI files, relative to `folder`."""
    description = json.loads((folder / "dataset_description.json").read_text())
    assert {"Name", "BIDSVersion", "DatasetType", "GeneratedBy"} <= set(description)
    assert description["DatasetType"] == "derivative" and description["BIDSVersion"] == "1.9.0"
    assert all("Name" in g for g in description["GeneratedBy"])
    assert description["GeneratedBy"][0]["Name"] == "autopipe" and description["GeneratedBy"][0]["Version"]
    assert description["SourceDatasets"][0]["URL"] == input_dir.resolve().as_uri()
    links = description["DatasetLinks"]
    ignored = (folder / ".bidsignore").read_text().split()  # only top-level patterns /NAME, as gitignore reads them
    assert all(pattern.startswith("/") and "/" not in pattern[1:] for pattern in ignored)
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.nii.gz")
                   if p.parent != folder or not any(fnmatch.fnmatch(p.name, i[1:]) for i in ignored))
    for name in names:
        match = DERIVATIVE.match(name)
        assert match, name
        sidecar = json.loads((folder / name.replace(".nii.gz", ".json")).read_text())
        for uri in sidecar["Sources"]:  # BIDS URIs bids:<dataset link>:<path in it>
            _, dataset, path = uri.split(":", 2)
            assert Path(links[dataset].removeprefix("file://")).joinpath(path).is_file(), uri
        assert sidecar["autopipe"]["Version"] == __version__ and sidecar["autopipe"]["PlanDigest"]
    assert not list(folder.rglob(".tmp_*"))
    return names


def scan(path, shape=(6, 5, 4)):
    affine = np.diag([-1.5, 1.0, 2.0, 1.0])
    image = nib.Nifti1Image(np.zeros(shape, np.float32), affine)
    nib.save(image, str(path))
    return path


def predicted(folder, case, mask):
    """What export_prediction leaves in -o: CASE.nii.gz and CASE_probability.nii.gz on the scan's grid."""
    affine = np.diag([-1.5, 1.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), str(folder / f"{case}.nii.gz"))
    nib.save(nib.Nifti1Image(mask.astype(np.float32) * 0.9, affine), str(folder / f"{case}_probability.nii.gz"))
    return folder / f"{case}.nii.gz", folder / f"{case}_probability.nii.gz"


def test_cases_become_alphanumeric_subjects_and_the_dataset_validates(tmp_path):
    inputs, out = tmp_path / "new_scans", tmp_path / "out"
    inputs.mkdir(), out.mkdir()
    cases = ["pvl_007", "case-2"]
    entities = bids_entities(cases, None)
    assert entities == {"pvl_007": {"sub": "pvl007"}, "case-2": {"sub": "case2"}}
    mask = np.zeros((6, 5, 4), np.uint8)
    mask[1:3, 2, 1] = 1
    for case in cases:
        written = write_case(out, entities[case], *predicted(out, case, mask), [scan(inputs / f"{case}_0000.nii.gz")],
                             inputs, provenance("3d_fullres", ["0", "1"], "abc123"))
        assert len(written) == 4
    write_dataset_description(out, inputs, "3d_fullres", ["0", "1"], "abc123")  # --bids OUT: -o itself
    names = check_bids_derivative(out, inputs)
    assert names == ["sub-case2/anat/sub-case2_space-orig_desc-lesion_mask.nii.gz",
                     "sub-case2/anat/sub-case2_space-orig_label-lesion_probseg.nii.gz",
                     "sub-pvl007/anat/sub-pvl007_space-orig_desc-lesion_mask.nii.gz",
                     "sub-pvl007/anat/sub-pvl007_space-orig_label-lesion_probseg.nii.gz"]
    written_mask = nib.load(out / names[2])
    assert np.array_equal(np.asanyarray(written_mask.dataobj), mask) and written_mask.get_data_dtype() == np.uint8
    assert nib.load(out / names[3]).get_data_dtype() == np.float32
    sidecar = json.loads((out / names[2].replace(".nii.gz", ".json")).read_text())
    assert sidecar["Type"] == "Lesion" and sidecar["Sources"] == ["bids:input:pvl_007_0000.nii.gz"]
    assert sidecar["autopipe"] == {"Version": __version__, "Configuration": "3d_fullres", "Folds": ["0", "1"],
                                   "PlanDigest": "abc123"}


def test_imported_subjects_and_sessions_name_the_files(tmp_path):
    cohort = tmp_path / "Dataset001_X"
    images = cohort / "imagesTs"
    images.mkdir(parents=True)
    (cohort / "import_sources.json").write_text(json.dumps({
        "source_kind": "bids", "source": str(tmp_path / "bids"),
        "cases": {"c1": {"bids": {"sub": "01", "ses": "pre"}}, "c2": {"bids": {"sub": "01", "ses": "post"}},
                  "c3": {"channels": {}}}}))
    sources = find_import_sources(images)
    entities = bids_entities(["c1", "c2", "c3"], sources)
    assert entities == {"c1": {"sub": "01", "ses": "pre"}, "c2": {"sub": "01", "ses": "post"}, "c3": {"sub": "c3"}}
    out = tmp_path / "derivatives" / "autopipe"
    out.mkdir(parents=True)
    mask = np.zeros((6, 5, 4), np.uint8)
    for case in entities:
        write_case(out, entities[case], *predicted(out, case, mask), [scan(images / f"{case}_0000.nii.gz")], images,
                   provenance("2d", ["all"], "d"))
    write_dataset_description(out, images, "2d", ["all"], "d")
    names = check_bids_derivative(out, images)
    assert "sub-01/ses-pre/anat/sub-01_ses-pre_space-orig_desc-lesion_mask.nii.gz" in names
    assert "sub-01/ses-post/anat/sub-01_ses-post_space-orig_label-lesion_probseg.nii.gz" in names


def test_cases_that_would_share_a_name_are_refused(tmp_path):
    with pytest.raises(AutopipeError, match="cases a1 and a_1 would both be named sub-a1"):
        bids_entities(["a1", "a_1"], None)
    with pytest.raises(AutopipeError, match="no letters or digits"):
        bids_entities(["___"], None)
    (tmp_path / "import_sources.json").write_text(json.dumps({
        "source_kind": "bids", "source": "/x",
        "cases": {"c1": {"bids": {"sub": "01"}}, "c2": {"bids": {"sub": "01"}}}}))
    with pytest.raises(AutopipeError, match="sub-01"):
        bids_entities(["c1", "c2"], find_import_sources(tmp_path))
    (tmp_path / "import_sources.json").write_text("[1, 2")
    with pytest.raises(AutopipeError, match="cannot read import_sources.json"):
        find_import_sources(tmp_path)
