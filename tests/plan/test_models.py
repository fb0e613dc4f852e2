"""The other models are planned only when the data allows, and sized to the device."""

from autopipe.plan.hardware import resolve_hardware
from autopipe.plan.models import RECON_LADDER, plan_hand_function, plan_joint, plan_multitask, plan_reconstruction
from autopipe.plan.time_budget import default_budget

CPU = resolve_hardware("cpu", memory_gb=16, throughput_gflops=100.0, threads=2)
GPU = resolve_hardware("cuda", memory_gb=24, throughput_gflops=30000.0, threads=8)


def _kspace(matrix=(218, 182), mask="poisson", with_segmentation=0):
    return {"cases": 20, "coils": 8, "matrix": list(matrix), "total_slices": 240, "mask_types": {mask: 20},
            "effective_acceleration_median": 7.9, "calibration_size_median": 12.0,
            "with_segmentation": with_segmentation}


def test_no_kspace_no_reconstruction():
    assert plan_reconstruction(None, CPU, default_budget("cpu", None)) is None
    assert plan_multitask(None, True, CPU, default_budget("cpu", None)) is None


def test_gpu_gets_the_published_cirim_and_the_cpu_a_smaller_one():
    gpu = plan_reconstruction(_kspace(), GPU, default_budget("cuda", None))
    assert (gpu.cascades, gpu.time_steps, gpu.hidden_channels) == RECON_LADDER[0]
    assert gpu.acceleration == 7.9 and gpu.mask_type == "poisson" and gpu.calibration_size == 12
    cpu = plan_reconstruction(_kspace(), CPU, default_budget("cpu", None))
    assert (cpu.cascades, cpu.time_steps, cpu.hidden_channels) != RECON_LADDER[0]
    assert cpu.seconds_per_iteration <= 3600 / 2000


def test_unknown_mask_type_falls_back_with_a_reason():
    plan = plan_reconstruction(_kspace(mask="spiral"), GPU, default_budget("cuda", None))
    assert plan.mask_type == "poisson" and "spiral" in plan.reasons["mask_type"]


def test_multitask_needs_labels_for_the_slices():
    budget = default_budget("cuda", None)
    assert plan_multitask(_kspace(), False, GPU, budget) is None
    assert plan_multitask(_kspace(with_segmentation=20), False, GPU, budget) is not None
    assert plan_multitask(_kspace(), True, GPU, budget).segmentation_weight == 0.9


def test_hand_function_needs_two_cases_per_class():
    def clinical(impaired, good):
        return {"impaired": impaired, "good": good, "positive": "impaired", "negative": "good"}

    assert plan_hand_function(None) is None
    assert plan_hand_function(clinical(1, 12)) is None
    balanced = plan_hand_function(clinical(10, 10))
    assert balanced.class_weight == "none" and balanced.inner_folds == 5
    skewed = plan_hand_function(clinical(3, 17))
    assert skewed.class_weight == "balanced" and skewed.inner_folds == 3
    assert plan_joint(skewed).hand_function_weight == 0.1 and plan_joint(None) is None
