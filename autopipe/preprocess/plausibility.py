"""Is each step's result physically possible? Findings with the likely cause and the fix, never silent.

A finding is a "fail" (the command exits with status 1 and `autopipe train` refuses the case until it
is fixed or accepted with `autopipe preprocess --accept CASE`) or a "flag" (worth a look at the QC
picture). Limits:

- brain volume: 1/8 to 1.25x the template brain (ICBM152 2009a mask, 1,883 ml): 235-2,354 ml. The low
  end is below a preterm neonate's brain (~250 ml; PVL cohorts are infants and children), the high
  end above the largest adult brains with CSF. Taken from the template, so it holds for any cohort;
  the cohort's own spread is flagged separately (autopipe.preprocess.report).
- template overlap: Dice of the registered brain mask with the template's; 0.95-0.97 when stripping
  and registration worked, 0.61-0.63 when the "brain" still holds the skull. Fail below 0.85, flag
  below 0.90.
- N4: the fitted field's 99th / 1st percentile ratio inside the brain; real fields vary by under 2x.
  A larger one means N4 fitted non-brain (background, skull). Fail above 5, flag above 3.
- lesions: at most 30% of the brain, and at most half of their voxels outside the brain mask (fail);
  flag above 10% outside.
- field of view: flag when more than 2% of the brain mask lies on the scan's edge (the scan cuts it).
- a brain mask that was not stripped must be a brain: it fails when the brain extractor keeps less than
  85% of the scanned object (a head: the skull is still there, whatever the volume, so a child's head
  is caught too), or when it covers over half of the scan's faces (it is the whole field of view: the
  background is noise or a constant, not zero).

Checks of a brain apply only to scans that hold a whole brain (autopipe.anatomy.head_evidence).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from autopipe.anatomy.head_evidence import STRIPPED_MIN_SHARE
from autopipe.templates import load_template

MIN_BRAIN_OF_TEMPLATE = 0.125
MAX_BRAIN_OF_TEMPLATE = 1.25
FAIL_TEMPLATE_DICE = 0.85
FLAG_TEMPLATE_DICE = 0.90
FAIL_BIAS_RANGE = 5.0
FLAG_BIAS_RANGE = 3.0
MAX_LESION_SHARE_OF_BRAIN = 0.3
FAIL_LESION_OUTSIDE = 0.5
FLAG_LESION_OUTSIDE = 0.1
FLAG_BRAIN_ON_BORDER = 0.02
MAX_FACES_COVERED = 0.5
FIX_STRIP = "set preprocessing.skull_strip to deepbet in plans.json and run `autopipe preprocess` again"


@dataclass(frozen=True)
class Finding:
    """One implausible result: which check, "fail" or "flag", and a message with the likely cause and the fix."""

    check: str
    severity: str
    message: str

    def to_plain(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Measurements:
    """What the checks look at, for one case (volumes in ml of the native scan)."""

    whole_brain: bool
    method: str  # the plan's skull_strip
    stripped_with: str  # what made the brain mask: "deepbet" or "none"
    decision: str  # why (the evidence's reason)
    brain_ml: float
    foreground_ml: float
    brain_on_border: float
    extractor_share: float | None = None  # the extractor's brain / the scanned object (None: not run)
    faces_covered: float = 0.0  # share of the scan's face voxels inside the brain mask
    bias_field_range: tuple[float | None, ...] = ()
    registration_dice: float | None = None
    lesion_ml: float | None = None
    lesion_outside_brain: float | None = None


def brain_volume_limits_ml(template: str = "mni152_2009a_sym") -> tuple[float, float]:
    """(lowest, highest) plausible brain volume in ml, from the template's brain (see the module docstring)."""
    _, mask = load_template(template, 1)
    ml = float(np.count_nonzero(mask.data)) * float(np.prod(mask.spacing)) / 1000
    return round(MIN_BRAIN_OF_TEMPLATE * ml), round(MAX_BRAIN_OF_TEMPLATE * ml)


def bias_field_range(field: np.ndarray, brain: np.ndarray) -> float:
    """99th / 1st percentile of a multiplicative bias field inside the brain."""
    low, high = np.percentile(field[brain > 0], [1, 99])
    return float(high / max(low, 1e-12))


def findings(m: Measurements) -> list[Finding]:
    """Every implausible result of one case, most fundamental first."""
    found = []
    if m.whole_brain:
        wrong_mask = _unstripped_mask(m)  # a head or the background: volume and edge follow from it
        found += wrong_mask or [*_brain_volume(m)]
        found += _template_overlap(m)
        found += [] if wrong_mask else _field_of_view(m)
        found += _lesions(m)
    found += _bias_field(m)
    return found


def _skipped_because(m: Measurements) -> str:
    if m.method == "none":
        return "skull_strip is none in plans.json"
    return f"the case looked already stripped ({m.decision})"


def _reaches_background(m: Measurements) -> bool:
    return m.faces_covered > MAX_FACES_COVERED


def _background_cause(m: Measurements) -> str:
    head = "" if m.extractor_share is None or m.extractor_share >= STRIPPED_MIN_SHARE else \
        f", and the scan is a head with skull (the brain extractor keeps {m.extractor_share:.0%} of it)"
    return (f"the brain mask ({m.brain_ml:.0f} ml) fills the field of view ({m.faces_covered:.0%} of the scan's "
            f"edge): the background is noise or a constant, not zero, so the non-zero region is not the brain{head} "
            f"(skull_strip {m.method}); set preprocessing.skull_strip to auto in plans.json")


def _unstripped_mask(m: Measurements) -> list[Finding]:
    """A mask that no stripping made must be the brain, not the head or the background."""
    if m.stripped_with != "none":
        return []
    if _reaches_background(m):
        return [Finding("brain_mask", "fail", _background_cause(m))]
    if m.extractor_share is not None and m.extractor_share < STRIPPED_MIN_SHARE:
        return [Finding("brain_mask", "fail",
                        f"the brain mask is the whole head: the brain extractor keeps only {m.extractor_share:.0%} "
                        f"of it; skull stripping was skipped because {_skipped_because(m)}; {FIX_STRIP}")]
    return []


def _brain_volume(m: Measurements) -> list[Finding]:
    low, high = brain_volume_limits_ml()
    if m.brain_ml > high:
        if m.stripped_with == "none":
            cause = (f"the brain mask is the whole head ({m.brain_ml:.0f} ml; no brain exceeds {high:.0f} ml): skull "
                     f"stripping was skipped because {_skipped_because(m)}; {FIX_STRIP}")
        else:
            cause = (f"skull stripping left {m.brain_ml:.0f} ml (no brain exceeds {high:.0f} ml): deepbet leaked into "
                     "the skull or scalp; look at the QC picture, check that the scan is a T1 or FLAIR head, or set "
                     "preprocessing.skull_strip_channel to a T1 channel")
        return [Finding("brain_volume", "fail", cause)]
    if m.brain_ml < low:
        return [Finding("brain_volume", "fail",
                        f"only {m.brain_ml:.0f} ml of brain (even a preterm neonate's is above {low:.0f} ml): skull "
                        "stripping clipped the brain, or the scan is not a whole head; look at the QC picture")]
    return []


def _template_overlap(m: Measurements) -> list[Finding]:
    dice = m.registration_dice
    if dice is None or dice >= FLAG_TEMPLATE_DICE:
        return []
    said = f"the registered brain overlaps the template's by only {dice:.2f} (Dice; 0.95-0.97 when all is well)"
    if m.stripped_with == "none":
        cause = f"{said}: the brain mask probably still holds the skull, as stripping was skipped because " \
                f"{_skipped_because(m)}; {FIX_STRIP}"
    elif m.brain_on_border > FLAG_BRAIN_ON_BORDER:
        cause = f"{said}: the scan cuts the brain ({m.brain_on_border:.0%} of the mask on its edge), so part of " \
                "it is missing; use scans that cover the whole brain"
    else:
        cause = f"{said}: registration or skull stripping failed; look at the QC picture (the outline should follow " \
                "the brain), then try preprocessing.registration_transform Rigid"
    return [Finding("template_overlap", "fail" if dice < FAIL_TEMPLATE_DICE else "flag", cause)]


def _field_of_view(m: Measurements) -> list[Finding]:
    if m.brain_on_border <= FLAG_BRAIN_ON_BORDER:
        return []
    return [Finding("field_of_view", "flag", f"{m.brain_on_border:.0%} of the brain mask lies on the edge of the scan: "
                                            "the field of view may cut the brain; look at the QC picture")]


def _bias_field(m: Measurements) -> list[Finding]:
    found = []
    for channel, ratio in enumerate(m.bias_field_range):
        if ratio is None:
            continue
        if not np.isfinite(ratio) or ratio > FLAG_BIAS_RANGE:
            severity = "fail" if not np.isfinite(ratio) or ratio > FAIL_BIAS_RANGE else "flag"
            found.append(Finding("bias_field", severity,
                                 f"channel {channel}: N4 fitted a field that varies {ratio:.1f}x over the brain (real "
                                 "fields vary under 2x): the brain mask probably holds background or skull; look at "
                                 "the QC picture, or set preprocessing.bias_field to none for this channel"))
    return found


def _lesions(m: Measurements) -> list[Finding]:
    if m.lesion_ml is None or m.lesion_ml == 0:
        return []
    found = []
    if m.lesion_ml > MAX_LESION_SHARE_OF_BRAIN * m.brain_ml:
        found.append(Finding("lesion_volume", "fail",
                             f"lesions cover {m.lesion_ml / m.brain_ml:.0%} of the brain ({m.lesion_ml:.0f} of "
                             f"{m.brain_ml:.0f} ml): the label is not a lesion mask (a tissue segmentation, or image "
                             "and label swapped); check this case's file in labelsTr"))
    outside = m.lesion_outside_brain
    if outside is not None and outside > FLAG_LESION_OUTSIDE:
        found.append(Finding("lesion_position", "fail" if outside > FAIL_LESION_OUTSIDE else "flag",
                             f"{outside:.0%} of the lesion voxels lie outside the brain mask: the label may belong to "
                             "another scan, or skull stripping cut off lesions; look at the QC picture"))
    return found
