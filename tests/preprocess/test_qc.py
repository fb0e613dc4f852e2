"""QC pictures: slices cut where asked and oriented neurologically, views round-trip, PNGs written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autopipe.preprocess import qc
from autopipe.preprocess.qc import (
    CaseViews,
    case_views,
    display_shape,
    load_views,
    save_views,
    window,
    write_case_qc,
    write_montage,
)

SHAPE = (56, 64, 48)  # a 40x48x36 brain inside a larger head
SPACING = (1.0, 1.2, 1.5)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _ellipsoid(shape: tuple[int, int, int], centre: tuple[float, ...], radii: tuple[float, ...]) -> np.ndarray:
    grid = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) <= 1


def _case(shape: tuple[int, int, int] = SHAPE, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, brain mask, lesions): a head ellipsoid, a 40x48x36 brain, two lesion blobs."""
    rng = np.random.default_rng(seed)
    middle = tuple(n / 2 for n in shape)
    head = _ellipsoid(shape, middle, tuple(n / 2 - 1 for n in shape))
    brain = _ellipsoid(shape, middle, (20, 24, 18))
    lesions = _ellipsoid(shape, (22, 30, 25), (2.5, 2.5, 2.5)) | _ellipsoid(shape, (34, 36, 20), (1.5, 1.5, 1.5))
    image = 200.0 * head + 500.0 * brain + 400.0 * lesions + rng.normal(0, 10, shape) * head
    return image.astype(np.float32), brain, lesions


@pytest.fixture(scope="module")
def case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _case()


@pytest.fixture(scope="module")
def views(case) -> CaseViews:
    image, brain, lesions = case
    return case_views(image, SPACING, brain, lesions)


def _read_png(path: Path) -> np.ndarray:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    return imread(path)


def _red_pixels(rgba: np.ndarray) -> int:
    return int(((rgba[..., 0] > 0.8) & (rgba[..., 1] < 0.25) & (rgba[..., 2] < 0.25)).sum())


def test_centre_is_a_lesion_voxel_at_the_lesion_centre_of_mass(case):
    image, brain, lesions = case
    big = _ellipsoid(SHAPE, (22, 30, 25), (2.5, 2.5, 2.5))
    assert case_views(image, SPACING, brain, big).centre == (22, 30, 25)
    two = case_views(image, SPACING, brain, lesions)
    assert lesions[two.centre]  # the mass centre lies between the blobs; the slices still cut one
    assert all(s.any() for s in two.lesions)


def test_centre_falls_back_to_brain_box_then_image_middle(case):
    image, brain, _ = case
    shifted = np.zeros_like(brain)
    shifted[10:21, 5:16, 30:41] = True
    assert case_views(image, SPACING, shifted, np.zeros_like(brain)).centre == (15, 10, 35)
    assert case_views(image, SPACING).centre == (28, 32, 24)
    assert case_views(image, SPACING, brain, centre=(3, 4, 5)).positions == {"axial": 5, "coronal": 4, "sagittal": 3}


def test_slice_shapes_dtypes_and_aspect(views):
    for v, view in enumerate(qc.VIEWS):
        assert views.image[v].shape == display_shape(SHAPE, view)
        assert views.image[v].dtype == np.float16 and views.brain[v].dtype == np.uint8
        assert views.lesions[v].shape == views.image[v].shape
    assert views.aspect == pytest.approx((1.2, 1.5, 1.25))
    image, brain, lesions, aspect = views.view("coronal")
    assert image.dtype == np.float32 and aspect == pytest.approx(1.5)
    assert image.max() == pytest.approx(views.scale * float(views.image[1].max()))


def test_neurological_orientation():
    volume = np.zeros(SHAPE, np.float32)
    volume[2, 32, 24] = 1.0  # far left (axis 0 low), mid anterior-posterior, mid height
    volume[28, 60, 24] = 2.0  # far anterior
    volume[28, 32, 45] = 3.0  # far superior
    views = case_views(volume, SPACING, centre=(28, 32, 24))
    axial, coronal, sagittal = (views.view(view)[0] for view in qc.VIEWS)

    def where(pixels: np.ndarray, value: float) -> tuple[int, int]:
        (row, col), = np.argwhere(np.isclose(pixels, value, atol=0.01))
        return int(row), int(col)

    assert where(axial, 1.0)[1] < axial.shape[1] // 2  # patient's left on the left
    assert where(axial, 2.0)[0] < axial.shape[0] // 2  # anterior up
    assert where(coronal, 1.0)[1] < coronal.shape[1] // 2
    assert where(coronal, 3.0)[0] < coronal.shape[0] // 2  # superior up
    assert where(sagittal, 3.0)[0] < sagittal.shape[0] // 2
    assert where(sagittal, 2.0)[1] < sagittal.shape[1] // 2  # anterior on the left of sagittal views


def test_large_intensities_survive_float16(case):
    image, brain, lesions = case
    views = case_views(image * 1e6, SPACING, brain, lesions)
    assert all(np.isfinite(s).all() for s in views.image)
    axial = views.view("axial")[0]
    expected = np.asarray(image[:, ::-1, views.centre[2]].T, np.float64) * 1e6
    np.testing.assert_allclose(axial, expected, rtol=2e-3, atol=2e-3 * np.abs(expected).max())


def test_save_load_round_trip(views, tmp_path):
    path = save_views(tmp_path / "case_001.npz", views)
    back = load_views(path)
    for name in ("image", "brain", "lesions"):
        for a, b in zip(getattr(views, name), getattr(back, name), strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
    assert (back.shape, back.spacing, back.centre, back.scale) == (views.shape, views.spacing, views.centre,
                                                                    views.scale)
    assert path.stat().st_size < 100_000
    no_masks = load_views(save_views(tmp_path / "bare.views", case_views(np.ones(SHAPE), SPACING)))
    assert no_masks.brain is None and no_masks.lesions is None
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp_")] == []


def test_case_qc_png(views, case, tmp_path):
    image, brain, _ = case
    template = case_views(image[::2, ::2, ::2], (2.0, 2.4, 3.0), brain[::2, ::2, ::2])
    rows = [("input", views), ("bias-corrected + brain mask", views), ("network input (template space)", template)]
    path = write_case_qc(tmp_path / "qc" / "case_001.png", "case_001", rows, note="brain 1234 ml, lesions 5.6 ml")
    picture = _read_png(path)
    one_row = _read_png(write_case_qc(tmp_path / "one_row.png", "case_001", rows[:1]))
    assert picture.shape[1] == one_row.shape[1] and picture.shape[0] > 2.5 * one_row.shape[0]
    assert path.stat().st_size < 1_000_000
    assert _red_pixels(picture) == 0


def test_montage_flags_turn_red(views, tmp_path):
    other = case_views(*_case((40, 50, 30), seed=1)[:1], (1.5, 1.5, 2.0))  # another size, no masks
    tiles = [(f"case_{i:03d}", views if i % 2 else other, None) for i in range(5)]
    plain = _read_png(write_montage(tmp_path / "plain.png", tiles))
    tiles[2] = (tiles[2][0], tiles[2][1], "brain volume 38% below median")
    flagged = _read_png(write_montage(tmp_path / "flagged.png", tiles))
    assert plain.shape[1] == flagged.shape[1]  # 3 columns either way; flag text adds height
    assert _red_pixels(plain) == 0
    assert _red_pixels(flagged) > 200


@pytest.mark.parametrize("count", [1, 60])
def test_montage_sizes(views, tmp_path, count):
    tiles = [(f"case_{i:03d}", views, "odd" if i == 0 else None) for i in range(count)]
    path = write_montage(tmp_path / "montage.png", tiles, view="sagittal")
    picture = _read_png(path)
    assert path.stat().st_size < 3_000_000
    columns = {1: 1, 60: 8}[count]  # ceil(sqrt(n))
    assert picture.shape[1] == pytest.approx(columns * (qc.MONTAGE_TILE_IN + 0.1) * qc.MONTAGE_DPI, abs=2)


def test_no_file_when_drawing_fails(views, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(qc, "_draw_view", broken)
    for write in (lambda p: write_case_qc(p, "case_001", [("input", views)]),
                  lambda p: write_montage(p, [("case_001", views, None)])):
        path = tmp_path / "out.png"
        with pytest.raises(RuntimeError, match="drawing failed"):
            write(path)
        assert list(tmp_path.iterdir()) == []


def test_no_file_when_saving_fails(views, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def broken(self, fname, **kwargs):
        Path(fname).write_bytes(PNG_SIGNATURE)  # half written
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        write_case_qc(tmp_path / "case.png", "case_001", [("input", views)])
    assert list(tmp_path.iterdir()) == []


def test_bad_shapes_name_the_array(case):
    image, brain, lesions = case
    with pytest.raises(ValueError, match=r"brain_mask shape 56x64x40 does not match image shape 56x64x48"):
        case_views(image, SPACING, brain[..., :40])
    with pytest.raises(ValueError, match=r"lesions shape 56x64 does not match image shape 56x64x48"):
        case_views(image, SPACING, brain, lesions[..., 0])
    with pytest.raises(ValueError, match=r"image must be 3D, got shape 56x64 \(2D\)"):
        case_views(image[..., 0], SPACING)
    with pytest.raises(ValueError, match="spacing"):
        case_views(image, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="centre"):
        case_views(image, SPACING, centre=(0, 0, 48))
    good = case_views(image, SPACING, brain)
    with pytest.raises(ValueError, match=r"CaseViews brain axial slice has shape 64x50"):
        CaseViews(image=good.image, brain=(np.zeros((64, 50), np.uint8), *good.brain[1:]), lesions=None,
                  shape=good.shape, spacing=good.spacing, centre=good.centre)
    with pytest.raises(ValueError, match="view"):
        write_montage(Path("unused.png"), [("case_001", good, None)], view="oblique")
    with pytest.raises(ValueError, match="no rows"):
        write_case_qc(Path("unused.png"), "case_001", [])


def test_window_ignores_background_and_outliers():
    pixels = np.zeros((100, 100), np.float32)
    pixels[20:80, 20:80] = np.linspace(100, 200, 3600).reshape(60, 60)
    pixels[50, 50] = 1e6
    low, high = window(pixels)
    assert 99 < low < 102 and 198 < high < 201
    assert window(np.zeros((4, 4))) == (0.0, 1.0)
    assert window(np.full((4, 4), 5.0)) == (0.0, 5.0)
