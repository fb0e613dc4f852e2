"""Plan the 2d and 3d_fullres segmentation configurations: nnU-Net v2's rules, then the time budget.

The nnU-Net part follows the ExperimentPlanner of nnU-Net v2.8.1 with its PlainConvUNet, written
from its documented rules (shared/reference/nnunet-planning.md): target spacing = per-axis median
(with the anisotropy exception), a 256^3 (2048^2) start patch shaped by 1/spacing and clipped to
the median shape, nnU-Net's pooling topology, shrinking until the memory proxy fits the reference
budget (560e6 at batch 2 in 3D, 85e6 at batch 12 in 2D, for 8 GB, scaled linearly), and a batch
size from the remaining headroom capped at 5% of the dataset's voxels, at least 2.

`autopipe.plan.time_budget` then fits each configuration to the training-time budget: on a GPU
only the number of epochs, on a CPU also patch size and features (see its docstring).
All functions here are pure: arrays of spacings and shapes in, plans out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from autopipe.plan.configs import (
    DEFAULT,
    INITIAL_LR,
    BudgetPlan,
    HardwarePlan,
    SegmentationConfig,
    planned,
    significant,
)
from autopipe.plan.time_budget import TimedPlan, fit_to_budget
from autopipe.plan.topology import (
    UNetPlan,
    feature_map_size,
    features_per_stage,
    get_pool_and_conv_props,
    shrink_patch,
)

ANISOTROPY_THRESHOLD = 3.0
REFERENCE_GB = 8.0
REFERENCE = {3: (560e6, 2), 2: (85e6, 12)}  # memory proxy and the batch size it was measured at, 8 GB
INITIAL_PATCH_VOXELS = {3: 256**3, 2: 2048**2}
MAX_DATASET_FRACTION = 0.05
MIN_BATCH_SIZE = 2


@dataclass(frozen=True)
class SegmentationPlanning:
    """Result of `plan_segmentation`. `target_spacing` is in input axis order, configurations in network order."""

    target_spacing: tuple[float, float, float]
    transpose_forward: tuple[int, int, int]
    configurations: dict[str, SegmentationConfig]
    reasons: dict[str, str]


def fullres_spacing(spacings: np.ndarray, shapes: np.ndarray) -> tuple[np.ndarray, str]:
    """Per-axis median spacing; for an axis > 3x coarser AND with < 1/3 the voxels, its 10th percentile."""
    spacings, shapes = np.asarray(spacings, float), np.asarray(shapes, float)
    target, sizes = np.median(spacings, 0), np.median(shapes, 0)
    worst = int(np.argmax(target))
    others = [d for d in range(len(target)) if d != worst]
    coarse = target[worst] > ANISOTROPY_THRESHOLD * max(target[others])
    few = sizes[worst] * ANISOTROPY_THRESHOLD < min(sizes[others])
    n = len(spacings)
    if not (coarse and few):
        return target, f"median spacing of {n} cases; no axis 3x coarser with 3x fewer voxels than the others"
    value = float(np.percentile(spacings[:, worst], 10))
    if value < max(target[others]):
        value = max(max(target[others]), value) + 1e-5
    target[worst] = value
    return target, (f"median spacing of {n} cases, but axis {worst} is > 3x coarser with < 1/3 the voxels: "
                    f"its 10th percentile {value:.3g} mm (nnU-Net's anisotropy rule)")


def planned_spacing(target: np.ndarray) -> tuple[float, float, float]:
    """A target spacing as plans.json holds it (6 decimals)."""
    return tuple(round(float(s), 6) for s in target)  # type: ignore[return-value]


def transpose_forward(target_spacing: np.ndarray) -> tuple[int, int, int]:
    """The coarsest axis first, the others in order (so 2D networks slice along the coarsest axis)."""
    worst = int(np.argmax(target_spacing))
    return (worst, *[d for d in range(3) if d != worst])  # type: ignore[return-value]


def resampled_median_shape(spacings: np.ndarray, shapes: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Median over cases of each cropped shape resampled to the target spacing (rounded per case)."""
    return np.median(np.round(np.asarray(spacings, float) / target * np.asarray(shapes, float)), 0)


def initial_patch_size(spacing: np.ndarray, median_shape: np.ndarray) -> tuple[float, ...]:
    """256^3 (2048^2) voxels shaped by 1/spacing, clipped to the median shape."""
    inverse = 1.0 / np.asarray(spacing, float)
    dim = len(inverse)
    scale = (INITIAL_PATCH_VOXELS[dim] / np.prod(inverse)) ** (1.0 / dim)
    return tuple(float(min(round(i * scale), m)) for i, m in zip(inverse, median_shape, strict=True))


def memory_reference(dim: int, memory_gb: float) -> tuple[float, int]:
    """nnU-Net's memory-proxy budget for `memory_gb`, and the batch size it corresponds to."""
    value, batch = REFERENCE[dim]
    return value * memory_gb / REFERENCE_GB, batch


def plan_unet(spacing: np.ndarray, median_shape: np.ndarray, dataset_voxels: float, num_classes: int,
              memory_gb: float, base_features: int = 32) -> UNetPlan:
    """nnU-Net v2's patch, topology and batch size for one configuration at a memory target."""
    dim = len(spacing)
    reference, ref_batch = memory_reference(dim, memory_gb)
    topology = get_pool_and_conv_props(spacing, initial_patch_size(spacing, median_shape))

    def estimate(t):  # one sample's memory proxy
        return feature_map_size(t.patch_size, t.strides, features_per_stage(t.n_stages, dim, base_features),
                                num_classes)

    memory = estimate(topology)
    while memory / ref_batch * MIN_BATCH_SIZE > reference:
        smaller = shrink_patch(spacing, topology, median_shape)
        if smaller is None:
            break
        topology, memory = smaller, estimate(smaller)
    batch = round(reference / memory * ref_batch)
    cap = round(dataset_voxels * MAX_DATASET_FRACTION / math.prod(topology.patch_size))
    batch = max(min(batch, cap), MIN_BATCH_SIZE)
    return UNetPlan(topology, features_per_stage(topology.n_stages, dim, base_features), batch)


def plan_segmentation(spacings: np.ndarray, shapes: np.ndarray, num_channels: int, num_classes: int,
                      hardware: HardwarePlan, budget: BudgetPlan,
                      training_extent: tuple[np.ndarray, str] | None = None,
                      target: tuple[np.ndarray, str] | None = None) -> SegmentationPlanning:
    """Both configurations for cases with these spacings and cropped shapes (one row per case, mm / voxels).

    `training_extent` (mm per axis, why) replaces the cases' cropped extent when preprocessing knows better
    what the network will see, e.g. the template's brain box when cases are registered to it. `target`
    (spacing, why) is the target spacing when the caller has decided it (autopipe.plan.planner, for
    preprocessing too); else `fullres_spacing` decides it here.
    """
    spacings, shapes = np.asarray(spacings, float), np.asarray(shapes, float)
    target, spacing_reason = fullres_spacing(spacings, shapes) if target is None else target
    order = transpose_forward(target)
    median = resampled_median_shape(spacings, shapes, target)
    shape_reason = f"median over {len(spacings)} cases of the cropped shape at the target spacing"
    if training_extent is not None:
        median = np.ceil(np.asarray(training_extent[0], float) / target)
        shape_reason = training_extent[1]
    dataset_voxels = float(np.prod(median[list(order)])) * len(spacings)
    configurations = {}
    for name, axes in (("3d_fullres", list(order)), ("2d", list(order[1:]))):
        if name == "3d_fullres" and median[order[0]] <= 1:
            continue  # a stack of 2D images: nnU-Net plans 2d only
        spacing, shape = target[axes], median[axes]
        nnunet = plan_unet(spacing, shape, dataset_voxels, num_classes, hardware.memory_gb)
        timed = fit_to_budget(spacing, shape, nnunet, num_channels, num_classes, hardware, budget)
        configurations[name] = _configuration(spacing, shape, timed, hardware, spacing_reason, shape_reason)
    reasons = {
        "transpose_forward": f"coarsest axis ({order[0]}) first; configurations list axes in this order",
        "target_spacing": spacing_reason,
    }
    return SegmentationPlanning(planned_spacing(target), order, configurations, reasons)


def optimizer_choice(hardware: HardwarePlan) -> dict[str, tuple[object, str]]:
    """nnU-Net's SGD for its long GPU schedule; Adam for a CPU budget of a few thousand steps, where SGD had not
    begun to find lesions (measured on the 2 mm demo cohort, 48^3 patch: after 300 steps lesion pseudo Dice
    0.00 with SGD 1e-2, 0.52 with Adam 1e-3; `autopipe train 0 -c 3d_fullres --optimizer sgd` to compare)."""
    if hardware.device == "cpu":
        why = ("CPU budget of a few thousand steps: Adam found lesions within 300 steps where nnU-Net's SGD had "
               "pseudo Dice 0.00 (2 mm demo cohort)")
        return {"optimizer": ("adam", why), "initial_lr": (INITIAL_LR["adam"], "Adam's usual rate, with poly decay")}
    return {"optimizer": (DEFAULT, "nnU-Net's optimizer for its long schedule"),
            "initial_lr": (DEFAULT, "nnU-Net's initial learning rate, with poly decay")}


def _configuration(spacing: np.ndarray, median: np.ndarray, timed: TimedPlan, hardware: HardwarePlan,
                   spacing_reason: str, shape_reason: str) -> SegmentationConfig:
    unet, topology = timed.unet, timed.unet.topology
    pooling = "nnU-Net's pooling rule for this patch: pool axes >= 8 voxels within 2x of the finest spacing"
    return planned(
        SegmentationConfig,
        spacing=(tuple(round(float(s), 6) for s in spacing), spacing_reason),
        median_shape=(tuple(float(s) for s in median), shape_reason),
        patch_size=(tuple(int(s) for s in unet.patch_size), timed.reasons["patch_size"]),
        batch_size=(unet.batch_size, timed.reasons["batch_size"]),
        n_stages=(topology.n_stages, pooling),
        features_per_stage=(unet.features, timed.reasons["features_per_stage"]),
        kernel_sizes=(topology.kernel_sizes, "3 along axes within 2x of the finest spacing, else 1 (nnU-Net)"),
        strides=(topology.strides, pooling),
        epochs=(timed.epochs, timed.reasons["epochs"]),
        iterations_per_epoch=(timed.iterations_per_epoch, timed.reasons["iterations_per_epoch"]),
        seconds_per_iteration=(significant(timed.seconds_per_iteration), timed.reasons["seconds_per_iteration"]),
        training_hours=(significant(timed.training_hours), timed.reasons["training_hours"]),
        network=(DEFAULT, f"nnU-Net's plain U-Net; planned for {hardware.device}"),
        n_conv_per_stage=(DEFAULT, "nnU-Net: two convolutions per stage"),
        deep_supervision=(DEFAULT, "nnU-Net: losses at every decoder resolution except the lowest"),
        **optimizer_choice(hardware),
    )  # type: ignore[return-value]
