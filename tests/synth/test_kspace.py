"""The k-space files: acceleration as asked, a SENSE reference that is the stored data's, slices tied to the image."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from autopipe.cohort.kspace_file import read_kspace
from autopipe.mri.coils import CoilGeometry
from autopipe.mri.fft import ifft2c
from autopipe.mri.masks import effective_acceleration
from autopipe.mri.operators import adjoint, forward, sense_combine
from autopipe.synth.geometry import Grid
from autopipe.synth.kspace import simulate_kspace, slab_coil_maps
from tests.synth.conftest import OPTIONS

CASES = ("PVL_001", "PVL_002", "PVL_003")
NAMES = ("kspace", "mask", "reconstruction_sense", "segmentation")


def _case(cohort, generator, case):
    data = read_kspace(cohort / "kspace" / f"{case}.h5", names=NAMES)
    image = nib.load(cohort / "imagesTr" / f"{case}_0000.nii.gz")
    record = next(c for c in generator["cases"] if c["case_id"] == case)
    return data, image, record


def _maps(image, data, record) -> np.ndarray:
    geometry = CoilGeometry(**record["kspace"]["coil_geometry"])
    grid = Grid(tuple(image.shape), np.asarray(image.affine))
    attrs = data["attrs"]
    return slab_coil_maps(geometry, grid, attrs["slice_axis"], np.asarray(attrs["slice_indices"]))


def test_measured_acceleration_is_within_ten_percent_of_the_request(cohort, generator):
    for case in CASES:
        data, _, _ = _case(cohort, generator, case)
        measured = effective_acceleration(data["mask"], data["kspace"].shape[-2:])
        assert abs(measured / OPTIONS.acceleration - 1) < 0.1
        assert np.isclose(data["attrs"]["effective_acceleration"], measured)
        assert data["attrs"]["fully_sampled"] and data["attrs"]["mask_type"] == "poisson"
        assert data["kspace"].shape[1] == OPTIONS.coils and data["kspace"].dtype == np.complex64


def test_reference_is_the_sense_combination_of_the_stored_kspace(cohort, generator):
    for case in CASES:
        data, image, record = _case(cohort, generator, case)
        combined = sense_combine(ifft2c(data["kspace"]), _maps(image, data, record))
        scale = np.abs(data["reconstruction_sense"]).max()
        np.testing.assert_allclose(combined, data["reconstruction_sense"], atol=1e-4 * scale)


def test_slices_are_the_image_slices(cohort, generator):
    for case in CASES:
        data, image, _ = _case(cohort, generator, case)
        axis, indices = data["attrs"]["slice_axis"], np.asarray(data["attrs"]["slice_indices"])
        volume = np.asarray(image.dataobj).astype(np.float64)
        assert nib.aff2axcodes(image.affine)[axis] in ("S", "I")
        assert len(indices) == data["kspace"].shape[0] == OPTIONS.kspace_slices
        assert indices.min() >= 0 and indices.max() < volume.shape[axis]
        in_plane = tuple(n for a, n in enumerate(volume.shape) if a != axis)
        assert data["kspace"].shape[-2:] == in_plane
        slices = np.moveaxis(np.take(volume, indices, axis=axis), axis, 0)
        assert np.corrcoef(np.abs(data["reconstruction_sense"]).ravel(), slices.ravel())[0, 1] > 0.95
        label = np.asarray(nib.load(cohort / "labelsTr" / f"{case}.nii.gz").dataobj)
        np.testing.assert_array_equal(data["segmentation"], np.moveaxis(np.take(label, indices, axis=axis), axis, 0))


def test_generator_forward_operator_is_adjoint_and_noise_free_kspace_is_forward(cohort, generator):
    data, image, record = _case(cohort, generator, "PVL_001")
    maps = _maps(image, data, record)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(maps.shape[:1] + maps.shape[2:]) + 1j * rng.standard_normal(maps.shape[:1]
                                                                                        + maps.shape[2:]))
    y = rng.standard_normal(maps.shape) + 1j * rng.standard_normal(maps.shape)
    for mask in (None, data["mask"]):
        lhs = np.vdot(forward(x, maps, mask), y)
        rhs = np.vdot(x, adjoint(y, maps, mask))
        assert abs(lhs - rhs) < 1e-4 * abs(lhs)
    np.testing.assert_allclose(simulate_kspace(x, maps, 0.0, 1), forward(x.astype(np.complex64), maps), atol=1e-4)
    sums = (np.abs(maps) ** 2).sum(1)
    np.testing.assert_allclose(sums[sums > 0], 1.0, atol=1e-4)
