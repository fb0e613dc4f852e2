"""plans.json: round trip, honoured edits, and edits rejected with the key path."""

import json

import pytest

from autopipe.errors import AutopipeError
from autopipe.plan.configs import PlanValueError, SegmentationConfig
from autopipe.plan.hardware import resolve_hardware
from autopipe.plan.planner import build_plans
from autopipe.plan.plans_file import load_plans, plans_to_json, save_plans
from autopipe.plan.time_budget import default_budget

FINGERPRINT = {
    "dataset": "Dataset001_Fake",
    "channel_names": {"0": "FLAIR", "1": "T1"},
    "labels": {"background": 0, "lesion": 1},
    "lesion_labels": [1],
    "geometry": {"spacing_ras": [[1.0, 1.0, 1.0]] * 10, "shape_after_crop_ras": [[140, 170, 140]] * 10,
                 "median_crop_ratio": 0.9},
    "anatomy": {"cases": 10, "whole_brain_cases": 10, "partial_cases": [], "stripped_cases": [],
                "needs_strip_cases": [f"case_{i}" for i in range(10)], "rule": "the rule"},
    "kspace": {"cases": 10, "coils": 8, "matrix": [160, 160], "slices_per_case": 12, "total_slices": 120,
               "mask_types": {"poisson": 10}, "fully_sampled": True, "effective_acceleration_median": 7.6,
               "calibration_size_median": 12.0, "with_segmentation": 10},
    "clinical": {"impaired": 3, "good": 7, "positive": "impaired", "negative": "good"},
}


@pytest.fixture(scope="module")
def plans():
    hardware = resolve_hardware("cpu", memory_gb=16, throughput_gflops=100.0, threads=2)
    return build_plans(FINGERPRINT, hardware, default_budget("cpu", None))


@pytest.fixture
def path(tmp_path, plans):
    return save_plans(plans, tmp_path / "plans.json")


def _edit(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def test_round_trip(plans, path):
    loaded = load_plans(path)
    assert loaded == plans
    assert loaded.configurations["3d_fullres"].reasons["patch_size"].startswith("CPU time rule")
    assert plans_to_json(loaded) == json.loads(path.read_text())


def test_every_planned_value_has_a_reason(path):
    def leaves(node):
        if isinstance(node, dict) and "value" in node:
            yield node
        elif isinstance(node, dict):
            for value in node.values():
                yield from leaves(value)

    data = json.loads(path.read_text())
    found = list(leaves(data))
    assert len(found) > 60
    assert all(isinstance(leaf["reason"], str) and leaf["reason"] for leaf in found)


def test_optional_components_planned_from_the_data(plans):
    assert plans.reconstruction.acceleration == 7.6 and plans.reconstruction.mask_type == "poisson"
    assert plans.multitask is not None
    assert plans.hand_function.class_weight == "balanced"  # 3 of 10 impaired
    assert plans.joint.hand_function_weight == 0.1
    assert plans.preprocessing.skull_strip == "auto"  # decided per case; the heads need it
    assert plans.preprocessing.skull_strip_channel == 1  # the T1 channel


def test_edit_is_honoured(path):
    _edit(path, lambda d: d["configurations"]["3d_fullres"]["patch_size"].update(value=[64, 64, 64]))
    assert load_plans(path).configurations["3d_fullres"].patch_size == (64, 64, 64)


def test_edit_with_a_default_can_be_left_out(path):
    _edit(path, lambda d: d["preprocessing"].pop("n4_shrink_factor"))
    assert load_plans(path).preprocessing.n4_shrink_factor == 4


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["configurations"]["3d_fullres"]["patch_size"].update(value=[64, 64]),
     "configurations.3d_fullres.patch_size: 3 values expected, got 2"),
    (lambda d: d["configurations"]["3d_fullres"]["patch_size"].update(value=[64, 64, 60]),
     "configurations.3d_fullres.patch_size: 60 (axis 2) is not a multiple of"),
    (lambda d: d["configurations"]["3d_fullres"]["batch_size"].update(value="2"),
     "configurations.3d_fullres.batch_size: an integer expected, got \"2\""),
    (lambda d: d["configurations"]["2d"]["batch_size"].update(value=0),
     "configurations.2d.batch_size: must be > 0"),
    (lambda d: d["configurations"]["3d_fullres"].update(patchsize={"value": [1, 1, 1]}),
     "configurations.3d_fullres.patchsize: unknown key"),
    (lambda d: d["preprocessing"]["normalization"].update(value=["zcore", "zscore_brain"]),
     "preprocessing.normalization[0]: unknown value \"zcore\"; valid: zscore_brain, zscore, ct"),
    (lambda d: d["configurations"].update(lowres=d["configurations"]["2d"]),
     "configurations.lowres: unknown value \"lowres\"; valid: 2d, 3d_fullres"),
    (lambda d: d["hardware"].pop("device"), "hardware.device: missing"),
    (lambda d: d["joint"]["hand_function_weight"].update(value=0), "joint.hand_function_weight: r must be > 0"),
    (lambda d: d.update(transpose_forward={"value": [0, 0, 1], "reason": ""}), "transpose_forward: a permutation"),
])
def test_invalid_edit_is_rejected_with_the_key_path(path, change, message):
    _edit(path, change)
    with pytest.raises(AutopipeError) as info:
        load_plans(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_optional_component_may_be_null(path):
    _edit(path, lambda d: d.update(reconstruction=None, multitask=None))
    loaded = load_plans(path)
    assert loaded.reconstruction is None and loaded.multitask is None


def test_broken_json_and_missing_file(tmp_path):
    with pytest.raises(AutopipeError, match="run `autopipe plan` first"):
        load_plans(tmp_path / "plans.json")
    (tmp_path / "plans.json").write_text("{")
    with pytest.raises(AutopipeError, match="not valid JSON"):
        load_plans(tmp_path / "plans.json")


def test_configs_check_themselves_on_construction(plans):
    config = plans.configurations["3d_fullres"]
    with pytest.raises(PlanValueError, match="strides"):
        SegmentationConfig(**{**vars(config), "strides": config.strides[:-1]})


def test_template_space_sizes_the_network_for_the_template_brain(plans):
    """Registered cases are cropped to the brain in template space: the patch is planned on that box, not the head."""
    assert plans.preprocessing.space == "template"
    config = plans.configurations["3d_fullres"]
    # MNI152 2009a brain box 145 x 181 x 155 mm, plus 4 mm each side, at 1 mm
    assert config.median_shape == (153.0, 189.0, 163.0)
    assert "template's brain box" in config.reasons["median_shape"]


def test_anisotropic_cohorts_stay_in_native_space():
    thick = {**FINGERPRINT, "geometry": {"spacing_ras": [[0.5, 0.5, 5.0]] * 10, "median_crop_ratio": 0.9,
                                         "shape_after_crop_ras": [[400, 400, 30]] * 10}}
    hardware = resolve_hardware("cpu", memory_gb=16, throughput_gflops=100.0, threads=2)
    plans = build_plans(thick, hardware, default_budget("cpu", None))
    assert plans.preprocessing.space == "native"
    assert plans.configurations["3d_fullres"].median_shape == (30.0, 400.0, 400.0)  # thick axis first
