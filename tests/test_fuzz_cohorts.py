"""Broken cohorts through every command that reads one: each is refused with a message that names the case and
the file, never a traceback or "failed unexpectedly", raw data byte-identical, nothing written outside the
output folders (HOME and TMPDIR point into the test's own folder)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from autopipe.cli import main
from autopipe.cohort.check import check_cohort
from autopipe.cohort.image_io import Volume, read_volume, write_volume
from tests.tiny_cohort import folders, make_tiny_cohort, tree_digest

NAME = "Dataset001_Fuzz"
IMAGE, LABEL, KSPACE, CLINICAL = ("imagesTr/case_001_0000.nii.gz", "labelsTr/case_001.nii.gz", "kspace/case_001.h5",
                                  "clinical.csv")
COMMANDS = (["check"], ["plan"], ["preprocess"], ["train", "0"], ["predict", "-i", "{new}", "-o", "{out}"],
            ["evaluate"])


def _json(root: Path, change: Callable[[dict], object]) -> None:
    data = json.loads((root / "dataset.json").read_text())
    change(data)
    (root / "dataset.json").write_text(json.dumps(data))


def _image(path: Path, change: Callable[[np.ndarray], np.ndarray], affine=lambda a: a) -> None:
    volume = read_volume(path)
    write_volume(path, Volume(change(volume.data.copy()), affine(volume.affine.copy())))


def _bytes(path: Path, change: Callable[[bytes], bytes]) -> None:
    path.write_bytes(change(path.read_bytes()))


def _flip_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 8]) + data[middle + 8:]


def _header(path: Path, change) -> None:
    img = nib.load(path)
    header = img.header.copy()
    change(header)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), None, header), path)


def _zero_spacing(header) -> None:
    affine = header.get_best_affine()
    affine[:3, 0] = 0.0
    header.set_sform(affine, code=1)


def _kspace(path: Path, change: Callable[[h5py.File], None]) -> None:
    with h5py.File(path, "r+") as f:
        change(f)


def _replace(f: h5py.File, name: str, value: np.ndarray) -> None:
    del f[name]
    f[name] = value


def _clinical(root: Path, change: Callable[[list[str]], list[str]]) -> None:
    lines = (root / CLINICAL).read_text().splitlines()
    (root / CLINICAL).write_text("\n".join(change(lines)) + "\n")


def _collide(root: Path) -> None:
    for src, dst in ((IMAGE, "imagesTr/CASE_001_0000.nii.gz"), (LABEL, "labelsTr/CASE_001.nii.gz"),
                     (KSPACE, "kspace/CASE_001.h5")):
        shutil.copy(root / src, root / dst)
    _json(root, lambda d: d.update(numTraining=d["numTraining"] + 1))
    _clinical(root, lambda lines: [*lines, "CASE_001,good,40"])


def _shift_origin(affine: np.ndarray) -> np.ndarray:
    affine[:3, 3] += 0.5
    return affine


def _nan_at(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float32)
    a.flat[:5] = np.nan
    return a


BREAKS: dict[str, Callable[[Path], None]] = {
    # dataset.json
    "dataset_json_not_json": lambda r: (r / "dataset.json").write_text("{not json"),
    "dataset_json_missing": lambda r: (r / "dataset.json").unlink(),
    "no_channel_names": lambda r: _json(r, lambda d: d.pop("channel_names")),
    "nnunet_v1_modality": lambda r: _json(r, lambda d: d.update(modality=d.pop("channel_names"))),
    "no_labels": lambda r: _json(r, lambda d: d.pop("labels")),
    "labels_not_consecutive": lambda r: _json(r, lambda d: d.update(labels={"background": 0, "lesion": 2})),
    "no_background_label": lambda r: _json(r, lambda d: d.update(labels={"lesion": 1})),
    "num_training_mismatch": lambda r: _json(r, lambda d: d.update(numTraining=7)),
    "num_training_missing": lambda r: _json(r, lambda d: d.pop("numTraining")),
    "file_ending_wrong": lambda r: _json(r, lambda d: d.update(file_ending=".mha")),
    "clinical_file_missing": lambda r: (r / CLINICAL).unlink(),
    "kspace_folder_missing": lambda r: shutil.rmtree(r / "kspace"),
    # layout
    "images_folder_missing": lambda r: shutil.rmtree(r / "imagesTr"),
    "labels_folder_missing": lambda r: shutil.rmtree(r / "labelsTr"),
    "label_missing": lambda r: (r / LABEL).unlink(),
    "image_missing_label_kept": lambda r: (r / IMAGE).unlink(),
    "undeclared_channel_file": lambda r: shutil.copy(r / IMAGE, r / "imagesTr/case_001_0001.nii.gz"),
    "label_without_images": lambda r: shutil.copy(r / LABEL, r / "labelsTr/case_009.nii.gz"),
    "case_ids_collide": _collide,
    # images: content
    "image_nan_voxels": lambda r: _image(r / IMAGE, _nan_at),
    "image_inf_voxels": lambda r: _image(r / IMAGE, lambda a: np.where(a > 120, np.inf, a).astype(np.float32)),
    "image_all_nan": lambda r: _image(r / IMAGE, lambda a: np.full(a.shape, np.nan, np.float32)),
    "image_all_zero": lambda r: _image(r / IMAGE, np.zeros_like),
    "image_constant": lambda r: _image(r / IMAGE, lambda a: np.full_like(a, 7.0)),
    "image_2d": lambda r: _image(r / IMAGE, lambda a: a[:, :, 8]),
    "image_4d": lambda r: _image(r / IMAGE, lambda a: np.stack([a, a], axis=-1)),
    "image_complex": lambda r: _image(r / IMAGE, lambda a: a.astype(np.complex64) * (1 + 1j)),
    # images: storage
    "image_truncated": lambda r: _bytes(r / IMAGE, lambda b: b[: len(b) // 2]),
    "image_not_an_image": lambda r: (r / IMAGE).write_text("patient list\n"),
    "image_empty_file": lambda r: (r / IMAGE).write_bytes(b""),
    "image_bytes_flipped": lambda r: _bytes(r / IMAGE, _flip_middle),
    "image_crc_damaged": lambda r: _bytes(r / IMAGE, lambda b: b[:-8] + bytes([b[-8] ^ 0xFF]) + b[-7:]),
    "image_zero_spacing": lambda r: _header(r / IMAGE, _zero_spacing),
    "image_nan_affine": lambda r: _header(r / IMAGE, lambda h: h.set_sform(np.full((4, 4), np.nan), code=1)),
    # labels
    "label_value_2": lambda r: _image(r / LABEL, lambda a: a * 2),
    "label_value_255": lambda r: _image(r / LABEL, lambda a: (a * 255).astype(np.uint8)),
    "label_negative": lambda r: _image(r / LABEL, lambda a: a.astype(np.int16) * -1),
    "label_fraction": lambda r: _image(r / LABEL, lambda a: a * 0.5),
    "label_nan": lambda r: _image(r / LABEL, _nan_at),
    "label_origin_shifted": lambda r: _image(r / LABEL, lambda a: a, _shift_origin),
    "label_spacing_differs": lambda r: _image(r / LABEL, lambda a: a, lambda m: m @ np.diag([1.0, 1.0, 1.25, 1.0])),
    "label_axis_flipped": lambda r: _image(r / LABEL, lambda a: a, lambda m: m @ np.diag([-1.0, 1.0, 1.0, 1.0])),
    "label_shape_differs": lambda r: _image(r / LABEL, lambda a: a[:, :, :15]),
    "label_truncated": lambda r: _bytes(r / LABEL, lambda b: b[: len(b) // 2]),
    "label_2d": lambda r: _image(r / LABEL, lambda a: a[:, :, 8]),
    # clinical.csv
    "clinical_empty": lambda r: (r / CLINICAL).write_text(""),
    "clinical_one_column": lambda r: _clinical(r, lambda lines: [line.split(",")[0] for line in lines]),
    "clinical_no_target_column": lambda r: _clinical(r, lambda lines: [line.replace("hand_function", "grip")
                                                                       for line in lines]),
    "clinical_row_missing": lambda r: _clinical(r, lambda lines: [line for line in lines if "case_001" not in line]),
    "clinical_duplicate_row": lambda r: _clinical(r, lambda lines: [*lines, lines[2]]),
    "clinical_unknown_value": lambda r: _clinical(r, lambda lines: [line.replace("impaired", "maybe")
                                                                    for line in lines]),
    # k-space
    "kspace_no_dataset": lambda r: _kspace(r / KSPACE, lambda f: f.__delitem__("kspace")),
    "kspace_real_dtype": lambda r: _kspace(r / KSPACE, lambda f: _replace(f, "kspace", np.abs(f["kspace"][()]))),
    "kspace_3d": lambda r: _kspace(r / KSPACE, lambda f: _replace(f, "kspace", f["kspace"][()][:, 0])),
    "kspace_real_imag_axis": lambda r: _kspace(r / KSPACE, lambda f: _replace(
        f, "kspace", np.stack([f["kspace"][()].real, f["kspace"][()].imag], -1))),
    "kspace_nan": lambda r: _kspace(r / KSPACE, lambda f: f["kspace"].__setitem__((0, 0, 0, 0), np.nan)),
    "kspace_mask_wrong_shape": lambda r: _kspace(r / KSPACE, lambda f: _replace(f, "mask",
                                                                                 np.ones((3, 3), np.uint8))),
    "kspace_mask_not_binary": lambda r: _kspace(r / KSPACE, lambda f: _replace(
        f, "mask", (f["mask"][()] * 3).astype(np.uint8))),
    "kspace_segmentation_undeclared_label": lambda r: _kspace(r / KSPACE, lambda f: _replace(
        f, "segmentation", np.full(f["segmentation"].shape, 7, np.uint8))),
    "kspace_attributes_missing": lambda r: _kspace(r / KSPACE, lambda f: f.attrs.__delitem__("slice_indices")),
    "kspace_slices_outside_image": lambda r: _kspace(r / KSPACE, lambda f: f.attrs.__setitem__(
        "slice_indices", np.array([40, 41, 42]))),
    "kspace_truncated": lambda r: _bytes(r / KSPACE, lambda b: b[: len(b) // 2]),
    "kspace_zero_bytes": lambda r: (r / KSPACE).write_bytes(b""),
    "kspace_file_missing": lambda r: (r / KSPACE).unlink(),
}


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> Path:
    return make_tiny_cohort(tmp_path_factory.mktemp("fuzz_template") / NAME)


def test_there_are_at_least_sixty_kinds():
    assert len(BREAKS) >= 60


@pytest.mark.parametrize("kind", sorted(BREAKS))
def test_every_command_refuses_a_broken_cohort(kind: str, valid: Path, tmp_path: Path, monkeypatch, capsys):
    base = tmp_path / "work"
    raw = Path(shutil.copytree(valid, base / "raw_data" / NAME))
    BREAKS[kind](raw)
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TMPDIR", str(tmp))
    errors = [p for p in check_cohort(raw, progress=False) if p.severity == "error"]
    assert errors, f"{kind}: check found no error"
    before = tree_digest(raw)
    outside_before = sorted(p for p in tmp_path.rglob("*") if not p.is_relative_to(base))
    for command in COMMANDS:
        argv = [part.format(new=tmp_path / "new", out=base / "out") for part in command]
        status = main([*argv, NAME, *folders(base), "-q", "-j", "1"] if command[0] != "predict"
                      else [*argv, *folders(base), "-q", "-j", "1"])
        err = capsys.readouterr().err
        assert status != 0, f"{kind}: `{command[0]}` accepted it"
        assert "Traceback" not in err and "unexpectedly" not in err, f"{kind}: {command[0]}: {err}"
        if command[0] != "check":
            first = errors[0]
            for named in (first.case, first.file):
                assert named is None or named in err, f"{kind}: {command[0]} does not name {named}: {err}"
    assert tree_digest(raw) == before, f"{kind}: raw data changed"
    outside_after = sorted(p for p in tmp_path.rglob("*") if not p.is_relative_to(base))
    assert outside_after == outside_before, f"{kind}: wrote outside the output folders"
