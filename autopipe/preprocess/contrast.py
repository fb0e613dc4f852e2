"""Tissue contrast: which sequence a registered scan looks like, and whether a model was trained on scans like it.

The plausibility checks ask whether a step's result is physically possible. This asks whether a scan is
the kind of scan a model learnt from. A U-Net trained on FLAIR reads a T1 without complaint: two real T1
heads got 9.8 and 27 ml of "lesion" and P(impaired) 0.92 and 0.99 from the FLAIR models of the
hand-function benchmark, with no warning. Whole-brain sequences order the tissues each in their own way:

    T1-weighted  white matter > grey matter > CSF
    FLAIR        grey matter > white matter > CSF (CSF nulled; lesions bright)
    T2-weighted  CSF > grey matter > white matter

In template space the template's own tissue probability maps (ICBM152 2009a grey and white matter, shipped
with nilearn) say where each tissue lies. For every channel of every preprocessed case the median
intensity of each tissue, in standard deviations of the brain from the brain's mean, is recorded in
CASE.json (`contrast`). `autopipe predict` compares a new scan with the cases the model was trained on:

- fail: a contrast (white vs grey matter, CSF vs grey matter) whose sign is the reverse of every training
  case's, each at least MIN_CONTRAST apart: another sequence, named by `sequence_like`;
- flag: a contrast further than max(training range, FLAG_MARGIN) outside the training range: another
  protocol or scanner, worth a look at the predictions.

Affine registration aligns the tissues only roughly, so the tissue regions are the maps' cores (white
matter > 0.9, grey matter > 0.6, CSF where neither exceeds 0.1), and medians ignore what is misplaced.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from autopipe.cohort.image_io import Volume
from autopipe.preprocess.geometry import Grid
from autopipe.preprocess.plausibility import Finding

WHITE_MATTER_CORE = 0.9
GREY_MATTER_CORE = 0.6
CSF_OTHER_TISSUE_MAX = 0.1
MIN_TISSUE_VOXELS = 20
MIN_CONTRAST = 0.1  # brain standard deviations: closer than this, two tissues count as equally bright
FLAG_MARGIN = 0.5  # brain standard deviations beyond the training range (or the range's width, if wider)
MIN_TRAINING_CASES = 3
TISSUES = ("white_matter", "grey_matter", "csf")


@dataclass(frozen=True)
class ChannelContrast:
    """Median intensity of each tissue in one channel, in brain standard deviations from the brain's mean."""

    white_matter: float
    grey_matter: float
    csf: float

    @property
    def white_vs_grey(self) -> float:
        return self.white_matter - self.grey_matter

    @property
    def csf_vs_grey(self) -> float:
        return self.csf - self.grey_matter

    def to_json(self) -> dict:
        return asdict(self)


CONTRASTS = {  # name -> (measure, what a positive value means, what a negative one means)
    "white_vs_grey": (lambda c: c.white_vs_grey, "white matter brighter than grey matter",
                      "white matter darker than grey matter"),
    "csf_vs_grey": (lambda c: c.csf_vs_grey, "CSF brighter than grey matter", "CSF darker than grey matter"),
}


def sequence_like(c: ChannelContrast) -> str:
    """The sequence whose tissue order `c` has, by the signs of its two contrasts (see the module docstring)."""
    if c.white_vs_grey > 0 > c.csf_vs_grey:
        return "T1-weighted"
    if c.white_vs_grey < 0 and c.csf_vs_grey < 0:
        return "FLAIR (or proton-density)"
    if c.white_vs_grey < 0 < c.csf_vs_grey:
        return "T2-weighted"
    return "an unrecognised contrast"


@functools.lru_cache(maxsize=4)
def tissue_maps(template: str, shape: tuple[int, ...], affine_bytes: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(grey matter, white matter) probabilities of `template` on a grid given by shape and affine (as bytes)."""
    if template != "mni152_2009a_sym":
        raise ValueError(f"no tissue maps for template {template!r}")
    from nilearn import datasets

    from autopipe.preprocess.registration import apply

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images = (datasets.load_mni152_gm_template(resolution=1), datasets.load_mni152_wm_template(resolution=1))
    grid = Grid(shape, np.frombuffer(affine_bytes, float).reshape(4, 4))
    return tuple(apply(Volume(np.asarray(i.get_fdata(), np.float32), np.asarray(i.affine, float)), grid, (), 1)
                 for i in images)


def tissue_regions(grey: np.ndarray, white: np.ndarray, brain: np.ndarray) -> dict[str, np.ndarray]:
    """The cores of the tissues inside the case's brain mask (see the module docstring)."""
    inside = brain > 0
    return {"white_matter": inside & (white > WHITE_MATTER_CORE),
            "grey_matter": inside & (grey > GREY_MATTER_CORE),
            "csf": inside & (grey < CSF_OTHER_TISSUE_MAX) & (white < CSF_OTHER_TISSUE_MAX)}


def channel_contrast(image: np.ndarray, brain: np.ndarray, regions: dict[str, np.ndarray]) -> ChannelContrast | None:
    """The tissues' medians in brain standard deviations from the brain's mean; None when a region is too small or
    the brain is constant."""
    inside = image[brain > 0].astype(np.float64)
    std = float(inside.std()) if inside.size else 0.0
    if std <= 0 or any(int(regions[t].sum()) < MIN_TISSUE_VOXELS for t in TISSUES):
        return None
    mean = float(inside.mean())
    return ChannelContrast(**{t: round((float(np.median(image[regions[t]])) - mean) / std, 3) for t in TISSUES})


def case_contrast(images: np.ndarray, brain: np.ndarray, template: str, full_grid: Grid,
                  crop_box: Sequence[tuple[int, int]]) -> tuple[ChannelContrast | None, ...]:
    """Every channel's contrast for a template-space case: `images` (C, ...) on `full_grid` cropped to `crop_box`."""
    grey, white = tissue_maps(template, tuple(full_grid.shape), np.asarray(full_grid.affine, float).tobytes())
    crop = tuple(slice(lo, hi) for lo, hi in crop_box)
    regions = tissue_regions(grey[crop], white[crop], brain)
    return tuple(channel_contrast(image, brain, regions) for image in images)


def contrast_findings(case: Sequence[ChannelContrast | None], training: Sequence[Sequence[ChannelContrast | None]],
                      channel_names: Sequence[str] | None = None, reference_name: str = "training scans"
                      ) -> list[Finding]:
    """Where `case`'s contrast departs from the `training` cases' (see the module docstring); one finding per channel.

    Channels without a measurement, and channels with fewer than MIN_TRAINING_CASES measured training cases,
    are not judged. `reference_name` is how the messages call the training cases.
    """
    found = []
    for k, x in enumerate(case):
        reference = [t[k] for t in training if k < len(t) and t[k] is not None]
        if x is None or len(reference) < MIN_TRAINING_CASES:
            continue
        reversed_, unusual = _departures(x, reference, reference_name)
        what = f"channel {k}" + (f" ({channel_names[k]})" if channel_names and k < len(channel_names) else "")
        if reversed_:
            found.append(Finding("contrast", "fail", _reversed_message(what, x, reference, reversed_, reference_name)))
        elif unusual:
            found.append(Finding("contrast", "flag",
                                 f"{what}: unusual tissue contrast, {'; '.join(unusual)}: another protocol or "
                                 f"scanner than the "
                                 f"{reference_name}'; look at the result before trusting it"))
    return found


def _departures(x: ChannelContrast, reference: list[ChannelContrast], reference_name: str
                ) -> tuple[list[str], list[str]]:
    reversed_, unusual = [], []
    for measure, positive, negative in CONTRASTS.values():
        value, values = measure(x), [measure(r) for r in reference]
        low, high = min(values), max(values)
        said = positive if value > 0 else negative
        if (low >= MIN_CONTRAST and value <= -MIN_CONTRAST) or (high <= -MIN_CONTRAST and value >= MIN_CONTRAST):
            reversed_.append(f"{said} ({value:+.2f} brain SD), the reverse of all {len(values)} {reference_name} "
                             f"({low:+.2f} to {high:+.2f})")
        elif not low - (margin := max(high - low, FLAG_MARGIN)) <= value <= high + margin:
            unusual.append(f"{said} ({value:+.2f} brain SD), outside the {reference_name}' {low:+.2f} to "
                           f"{high:+.2f}")
    return reversed_, unusual


def _reversed_message(what: str, x: ChannelContrast, reference: list[ChannelContrast], reversed_: list[str],
                      reference_name: str) -> str:
    trained = sorted({sequence_like(r) for r in reference})
    return (f"{what}: the tissue contrast of another sequence, {'; and '.join(reversed_)}: this scan looks "
            f"{sequence_like(x)}, the {reference_name} "
            f"{' or '.join(trained)}; a U-Net reads another sequence without complaint and finds lesions that are "
            "not there; give this channel the sequence of the others")
