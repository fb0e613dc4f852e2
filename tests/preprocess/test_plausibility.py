"""Plausibility checks: each implausible result is found, with the likely cause and the fix in its message."""

import dataclasses

import pytest

from autopipe.preprocess.plausibility import Measurements, brain_volume_limits_ml, findings

GOOD = Measurements(whole_brain=True, method="auto", stripped_with="deepbet", decision="a head with skull",
                    brain_ml=1250.0, foreground_ml=3200.0, brain_on_border=0.0, bias_field_range=(1.4,),
                    registration_dice=0.96, lesion_ml=4.0, lesion_outside_brain=0.0)


def _found(**changes):
    return {f.check: f for f in findings(dataclasses.replace(GOOD, **changes))}


def test_a_normal_case_and_an_infant_brain_pass():
    assert findings(GOOD) == []
    assert _found(brain_ml=400.0, foreground_ml=900.0) == {}  # a term neonate's brain


def test_limits_come_from_the_template_brain():
    low, high = brain_volume_limits_ml()
    assert low == pytest.approx(1883 / 8, abs=2) and high == pytest.approx(1.25 * 1883, abs=2)


def test_a_whole_head_left_unstripped_names_the_skipped_step_and_the_fix():
    head = _found(stripped_with="none", decision="looked stripped", brain_ml=4000.0, registration_dice=0.62)
    volume = head["brain_volume"]
    assert volume.severity == "fail"
    assert "the brain mask is the whole head" in volume.message and "skull stripping was skipped" in volume.message
    assert "set preprocessing.skull_strip to deepbet" in volume.message
    assert "still holds the skull" in head["template_overlap"].message
    forced = _found(method="none", stripped_with="none", brain_ml=4000.0)["brain_volume"]
    assert "skull_strip is none in plans.json" in forced.message


def test_a_child_head_left_unstripped_fails_on_its_template_overlap():
    child = _found(stripped_with="none", brain_ml=1300.0, registration_dice=0.63)  # a plausible volume
    assert set(child) == {"template_overlap"} and child["template_overlap"].severity == "fail"
    assert "set preprocessing.skull_strip to deepbet" in child["template_overlap"].message


def test_stripping_that_leaked_or_clipped_is_a_failed_check():
    assert "leaked" in _found(brain_ml=2600.0)["brain_volume"].message
    small = _found(brain_ml=150.0)["brain_volume"]
    assert small.severity == "fail" and "clipped" in small.message


def test_registration_between_the_limits_is_a_flag_and_a_cut_brain_is_named():
    assert _found(registration_dice=0.88)["template_overlap"].severity == "flag"
    cut = _found(registration_dice=0.80, brain_on_border=0.05)
    assert "cuts the brain" in cut["template_overlap"].message and cut["field_of_view"].severity == "flag"


def test_bias_field_and_lesion_checks():
    assert _found(bias_field_range=(7.0,))["bias_field"].severity == "fail"
    assert _found(bias_field_range=(3.5, None))["bias_field"].severity == "flag"
    assert _found(bias_field_range=(float("inf"),))["bias_field"].severity == "fail"
    assert "not a lesion mask" in _found(lesion_ml=500.0)["lesion_volume"].message
    assert _found(lesion_outside_brain=0.6)["lesion_position"].severity == "fail"
    assert _found(lesion_outside_brain=0.2)["lesion_position"].severity == "flag"


def test_scans_without_a_whole_brain_skip_the_brain_checks():
    crop = _found(whole_brain=False, brain_ml=60.0, registration_dice=None, lesion_ml=30.0)
    assert crop == {}


def test_an_unstripped_mask_that_is_a_head_fails_whatever_its_volume():
    child = _found(stripped_with="none", method="none", brain_ml=700.0, foreground_ml=700.0, extractor_share=0.56)
    assert child["brain_mask"].severity == "fail" and "the brain mask is the whole head" in child["brain_mask"].message
    assert "keeps only 56%" in child["brain_mask"].message
    assert _found(stripped_with="none", brain_ml=1200.0, foreground_ml=1150.0, extractor_share=0.99) == {}


def test_a_non_zero_background_is_named_as_the_cause():
    noisy = _found(stripped_with="none", method="none", brain_ml=9000.0, foreground_ml=1200.0, extractor_share=0.99,
                   faces_covered=1.0)
    assert "not zero" in noisy["brain_mask"].message and "skull_strip to auto" in noisy["brain_mask"].message
    assert "brain_volume" not in noisy  # the same cause, said once
    head = _found(stripped_with="none", method="none", brain_ml=3000.0, foreground_ml=2000.0, extractor_share=0.57,
                  faces_covered=0.02)  # a zero-padded head: the mask is larger than the object, but not the view
    assert "whole head" in head["brain_mask"].message and "brain_volume" not in head
