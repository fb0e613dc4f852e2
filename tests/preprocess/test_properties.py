"""CASE.json as CaseProperties: written exactly as read, and a damaged or foreign file named with what to do."""

import dataclasses
import json

import numpy as np
import pytest

from autopipe.errors import AutopipeError
from autopipe.files import write_json
from autopipe.preprocess.acceptance import unaccepted_failures
from autopipe.preprocess.plausibility import Finding
from autopipe.preprocess.properties import CaseProperties, ChannelNormalization, Plausibility, read_properties
from autopipe.preprocess.registration import Registration
from autopipe.preprocess.storage import is_finished, write_case_arrays
from tests.case_properties import case_properties


def native_case() -> CaseProperties:
    """A native-space case of two channels, CT and MRI, with k-space, a failed check and no label."""
    channel1 = Registration(("case_channel1_to_channel0_affine.mat",), ("case_channel1_to_channel0_affine.mat",),
                            (True,))
    properties = case_properties(space="native", lesion_volume_ml=None, lesion_voxels_in_grid=None,
                                 registration_dice=None,
                                 kspace={"slices": 2, "matrix": [20, 24], "seconds": {"coil_maps": 0.1, "total": 0.2}},
                                 normalization=(ChannelNormalization("ct", 40.5, 12.25),
                                                ChannelNormalization("zscore", 1.5, 2.0, None, 9.0)))
    plausibility = Plausibility(properties.plausibility.measurements,
                                (Finding("brain_volume", "fail", "too small"), Finding("field_of_view", "flag", "cut")))
    return dataclasses.replace(properties, plausibility=plausibility, transforms=dataclasses.replace(
        properties.transforms, to_template=None, to_grid=(), channels_to_channel0={1: channel1}))


@pytest.mark.parametrize("properties", [case_properties(), native_case()], ids=["template", "native"])
def test_properties_are_read_back_as_written(tmp_path, properties):
    path = write_json(tmp_path / "case.json", properties.to_json())
    back = read_properties(path)
    assert back.to_json() == properties.to_json()
    assert write_json(tmp_path / "again.json", back.to_json()).read_text() == path.read_text()
    assert back.case == "case" and back.space == properties.space
    assert back.grid.as_grid().shape == (3, 5, 8)


def test_the_json_keeps_its_keys():
    """The keys and the order autopipe has always written (contrast came later: older files read without it)."""
    plain = native_case().to_json()
    assert list(plain) == [
        "format_version", "autopipe_version", "case", "plan_digest", "source", "native", "space", "template", "axes",
        "full_grid", "crop_box", "grid", "transforms", "arrays", "brain_volume_ml", "lesion_volume_ml",
        "lesion_voxels_in_grid", "registration_dice", "anatomy", "plausibility", "normalization", "contrast", "kspace",
        "timings", "seconds"]
    assert list(plain["native"]) == ["shape", "affine", "spacing", "axcodes"]
    assert list(plain["transforms"]) == ["folder", "to_template", "to_grid", "channels_to_channel0"]
    assert plain["transforms"]["channels_to_channel0"]["1"]["invert_inverse"] == [True]
    assert plain["anatomy"]["stripped_with"] == "deepbet" and list(plain["anatomy"])[-1] == "stripped_with"
    assert plain["plausibility"]["failed"] is True
    assert plain["normalization"] == [{"scheme": "ct", "mean": 40.5, "std": 12.25},
                                      {"scheme": "zscore", "mean": 1.5, "std": 2.0, "clip_low": None, "clip_high": 9.0}]
    assert plain["crop_box"] == [[1, 4], [2, 7], [0, 8]]


def test_plausibility_tells_failed_checks_from_flags():
    plausibility = native_case().plausibility
    assert plausibility.failed and plausibility.failed_checks() == {"brain_volume": "too small"}
    assert plausibility.flags() == ["cut"]


def test_a_missing_file_is_none_and_a_damaged_one_an_error_that_says_what_to_do(tmp_path):
    path = tmp_path / "case.json"
    assert read_properties(path) is None
    path.write_text('{"case": "case", "plan_')
    with pytest.raises(AutopipeError, match="damaged JSON") as error:
        read_properties(path)
    assert error.value.where == str(path) and "autopipe preprocess --force" in error.value.fix


@pytest.mark.parametrize(("change", "said"), [
    (lambda p: p.pop("grid"), "grid is missing"),
    (lambda p: p["full_grid"].update(shape=[6, 7]), "full_grid: shape: a list of 3 expected"),
    (lambda p: p["transforms"]["to_template"].pop("inverse"), "transforms: to_template: inverse is missing"),
    (lambda p: p.update(crop_box=[[1, 4], [2, "7"], [0, 8]]), 'crop_box: an integer expected, got "7"'),
    (lambda p: p.update(space="mni"), "space: one of template, native expected"),
    (lambda p: p.update(brain_volume_ml=None), "brain_volume_ml: a number expected, got null"),
])
def test_a_malformed_file_names_what_is_wrong(tmp_path, change, said):
    plain = case_properties().to_json()
    change(plain)
    path = tmp_path / "case.json"
    path.write_text(json.dumps(plain))
    with pytest.raises(AutopipeError) as error:
        read_properties(path)
    assert said in error.value.what and error.value.where == str(path)
    assert "autopipe preprocess --force" in error.value.fix


def test_foreign_or_damaged_properties_leave_a_case_unfinished_and_without_failed_checks(tmp_path):
    write_case_arrays(tmp_path / "CASE.h5", np.zeros((1, 2, 2, 2), np.float32), np.ones((2, 2, 2)), None, seed=0)
    path = tmp_path / "CASE.json"
    write_json(path, case_properties("CASE", plan_digest="abc").to_json())
    assert is_finished(tmp_path, "CASE", "abc")
    for text in ('{"plan_digest": "abc", "format_version": 1}', "[1, 2]", '{"plan_digest": "ab'):
        path.write_text(text)
        assert not is_finished(tmp_path, "CASE", "abc")
        assert unaccepted_failures(tmp_path, ["CASE"]) == {}
