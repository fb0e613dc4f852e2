"""Tissue contrast: hand-computed medians, the sequence each tissue order means, the rule that refuses another
sequence, and the template's own T1 (real anatomy shipped with nilearn) read as T1-weighted."""

import dataclasses
import json

import numpy as np
import pytest

from autopipe.bank.variants import flair_like
from autopipe.files import write_json
from autopipe.preprocess.contrast import (
    ChannelContrast,
    case_contrast,
    channel_contrast,
    contrast_findings,
    sequence_like,
    tissue_regions,
)
from autopipe.preprocess.geometry import Grid, resampled_grid
from autopipe.preprocess.properties import read_properties
from autopipe.preprocess.report import case_flags
from autopipe.templates import load_template
from tests.case_properties import case_properties

T1 = ChannelContrast(0.9, -0.1, -1.5)
FLAIR = ChannelContrast(-0.2, 0.3, -3.0)
T2 = ChannelContrast(-0.6, 0.1, 2.0)


def test_medians_in_brain_standard_deviations_by_hand():
    """400 white-matter voxels at 3, 400 grey at 2, 200 CSF at 0: mean 2, SD sqrt(1.2)."""
    image = np.concatenate([np.full(400, 3.0), np.full(400, 2.0), np.zeros(200), np.full(50, 99.0)])
    brain = np.r_[np.ones(1000), np.zeros(50)]  # the 99s lie outside the brain and count nowhere
    regions = {"white_matter": np.r_[np.ones(400), np.zeros(650)] > 0,
               "grey_matter": np.r_[np.zeros(400), np.ones(400), np.zeros(250)] > 0,
               "csf": np.r_[np.zeros(800), np.ones(200), np.zeros(50)] > 0}
    c = channel_contrast(image, brain, regions)
    sd = np.sqrt(1.2)
    assert c == ChannelContrast(round(1 / sd, 3), 0.0, round(-2 / sd, 3))
    assert channel_contrast(np.ones(1050), brain, regions) is None  # a constant brain has no contrast
    small = {**regions, "csf": np.r_[np.zeros(800), np.ones(10), np.zeros(240)] > 0}
    assert channel_contrast(image, brain, small) is None  # too few voxels to measure a tissue


def test_tissue_regions_are_the_cores_inside_the_brain():
    grey, white = np.array([0.7, 0.2, 0.05, 0.05, 0.7]), np.array([0.2, 0.95, 0.05, 0.5, 0.2])
    regions = tissue_regions(grey, white, np.array([1, 1, 1, 1, 0]))
    assert regions["grey_matter"].tolist() == [True, False, False, False, False]
    assert regions["white_matter"].tolist() == [False, True, False, False, False]
    assert regions["csf"].tolist() == [False, False, True, False, False]


@pytest.mark.parametrize(("contrast", "sequence"), [(T1, "T1-weighted"), (FLAIR, "FLAIR (or proton-density)"),
                                                    (T2, "T2-weighted"),
                                                    (ChannelContrast(0.5, 0.0, 0.5), "an unrecognised contrast")])
def test_each_tissue_order_names_its_sequence(contrast, sequence):
    assert sequence_like(contrast) == sequence


def _around(c: ChannelContrast, n: int = 5) -> list[tuple[ChannelContrast]]:
    return [(dataclasses.replace(c, white_matter=c.white_matter + 0.02 * i, csf=c.csf - 0.05 * i),) for i in range(n)]


def test_a_t1_for_a_flair_model_fails_naming_both_sequences():
    found = contrast_findings((T1,), _around(FLAIR), ["FLAIR"])
    assert [(f.check, f.severity) for f in found] == [("contrast", "fail")]
    message = found[0].message
    assert message.startswith("channel 0 (FLAIR): the tissue contrast of another sequence, white matter brighter "
                              "than grey matter (+1.00 brain SD)")
    assert "the reverse of all 5 training scans" in message
    assert "looks T1-weighted, the training scans FLAIR (or proton-density)" in message


def test_a_t2_for_a_flair_model_fails_on_the_csf():
    found = contrast_findings((T2,), _around(FLAIR), ["FLAIR"])
    assert found[0].severity == "fail" and "CSF brighter than grey matter" in found[0].message
    assert "white matter" not in found[0].message.split(":")[1]  # white vs grey agrees with FLAIR


def test_the_training_cases_themselves_pass_and_an_unusual_one_is_flagged():
    training = _around(FLAIR)
    assert all(contrast_findings(case, training) == [] for case in training)
    far = dataclasses.replace(FLAIR, csf=-6.0)  # same order, CSF much darker than in any training scan
    found = contrast_findings((far,), training, ["FLAIR"])
    assert [f.severity for f in found] == ["flag"]
    assert "(-6.30 brain SD), outside the training scans' -3.50 to -3.30" in found[0].message


def test_too_few_or_unmeasured_training_cases_judge_nothing():
    assert contrast_findings((T1,), _around(FLAIR, 2)) == []
    assert contrast_findings((T1,), [(None,)] * 5) == []
    assert contrast_findings((None,), _around(FLAIR)) == []


def test_contrasts_near_zero_are_not_called_reversed():
    """A FLAIR whose white and grey matter are nearly equal is no T1: reversal needs MIN_CONTRAST on both sides."""
    faint = dataclasses.replace(FLAIR, white_matter=FLAIR.grey_matter + 0.05)
    assert all(f.severity != "fail" for f in contrast_findings((faint,), _around(FLAIR)))


def test_the_templates_own_t1_and_a_flair_like_copy_on_a_2mm_grid():
    """Real anatomy: the ICBM152 T1 reads T1-weighted, its FLAIR-like remap FLAIR; they reverse each other."""
    image, mask = load_template("mni152_2009a_sym", 1)
    full = resampled_grid(Grid.of(image), (2.0, 2.0, 2.0))
    from autopipe.preprocess.registration import apply

    t1 = apply(image, full, (), 1)
    brain = apply(mask.with_data(mask.data.astype(np.float32)), full, (), 1) > 0.5
    flair = flair_like(t1, float(np.median(t1[brain & (t1 > np.percentile(t1[brain], 60))])))
    box = ((5, full.shape[0] - 5), (5, full.shape[1] - 5), (5, full.shape[2] - 5))
    crop = tuple(slice(lo, hi) for lo, hi in box)
    c_t1, c_flair = case_contrast(np.stack([t1[crop], flair[crop]]), brain[crop], "mni152_2009a_sym", full, box)
    assert sequence_like(c_t1) == "T1-weighted" and sequence_like(c_flair) == "FLAIR (or proton-density)"
    assert contrast_findings((c_t1,), [(c_flair,)] * 3)[0].severity == "fail"


def test_contrast_is_stored_in_case_json_and_older_files_read_without_it(tmp_path):
    properties = case_properties(contrast=(T1, None))
    back = read_properties(write_json(tmp_path / "case.json", properties.to_json()))
    assert back.contrast == (T1, None)
    older = properties.to_json()
    del older["contrast"]
    (tmp_path / "old.json").write_text(json.dumps(older))
    assert read_properties(tmp_path / "old.json").contrast is None


def test_the_report_flags_a_case_whose_channel_is_another_sequence():
    cohort = [case_properties(f"c{i}", contrast=c) for i, c in enumerate(_around(FLAIR))]
    swapped = case_properties("t1", contrast=(T1,))
    flags = case_flags(swapped, None, cohort)
    assert len(flags) == 1 and "looks T1-weighted, the other cases FLAIR" in flags[0]
    assert case_flags(cohort[0], None, [*cohort[1:], swapped]) == []  # one odd case does not make others odd
