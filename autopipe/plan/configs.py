"""The typed, frozen form of plans.json: one dataclass per component, defaults declared once here.

Every leaf field is a planned value; `reasons` maps field names to why the planner chose them
(serialized as {"value": ..., "reason": ...}, see autopipe.plan.plans_file). Names in a plan are
resolved through the explicit dicts below; `Choice(DICT)` marks a field whose value must be a key of
DICT. Invariants are checked on construction and raise PlanValueError naming the field, so a
hand-edited plans.json fails with the key path and the planner cannot write an inconsistent plan.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from autopipe.mri.masks import MASK_KINDS
from autopipe.plan.topology import N_CONV_PER_STAGE

FORMAT_VERSION = 1

DEVICES = {"cpu": "CPU cores", "cuda": "an NVIDIA GPU", "mps": "an Apple GPU"}
CONFIGURATION_DIMS = {"2d": 2, "3d_fullres": 3}
OPTIMIZERS = {
    "sgd": "SGD with Nesterov momentum 0.99, weight decay 3e-5, poly decay (nnU-Net's)",
    "adam": "AdamW, weight decay 3e-5, poly decay",
}
INITIAL_LR = {"sgd": 1e-2, "adam": 1e-3}  # each optimizer's usual starting rate
NETWORKS = {"PlainConvUNet": "nnU-Net's plain U-Net: 2 convs per stage, InstanceNorm, LeakyReLU, strided convs"}
SKULL_STRIP_METHODS = {
    "auto": "per case from evidence: deepbet for heads with skull, the given brain for stripped ones, the non-zero "
            "region for scans that hold no whole brain (autopipe.anatomy.head_evidence)",
    "none": "every case as it is: the brain is the non-zero region (stripped heads, or scans that are not heads)",
    "deepbet": "deepbet, a learned extractor (weights ship in its wheel; trained on T1, measured on FLAIR too)",
}
BIAS_FIELD_METHODS = {"n4": "N4 bias-field correction fitted inside the brain mask", "none": "no correction (CT)"}
FIELDS_OF_VIEW = {
    "whole_brain": "every scan holds a whole brain: stripping, N4, registration to the template",
    "partial": "some scans hold no whole brain (crops): native space, no registration, like nnU-Net",
}
SPACES = {
    "template": "the template's axes at the target spacing: heads aligned and scaled alike (affine registration)",
    "native": "the scan's own anatomy, axes reordered to RAS, at the target spacing (nnU-Net's way)",
}
COIL_MAP_METHODS = {
    "espirit": "ESPIRiT eigenvector maps from the calibration region (Uecker et al. 2014)",
    "calibration": "low-resolution calibration images divided by their root sum of squares",
}
INTERPOLATION_ORDERS = {0: "nearest neighbour", 1: "linear", 3: "cubic B-spline"}
TEMPLATES = {"mni152_2009a_sym": "ICBM152 2009a symmetric T1, skull-stripped, nilearn.datasets.load_mni152_template"}
TRANSFORMS = {"Rigid": "6 parameters", "Affine": "12 parameters", "SyN": "affine + symmetric diffeomorphic"}
NORMALIZATIONS = {
    "zscore_brain": "per image: (x - mean) / std over the brain mask, 0 outside",
    "zscore": "per image: (x - mean) / std over all voxels",
    "ct": "clip to the cohort's foreground 0.5-99.5 percentiles, then the cohort's mean and std",
}
RECONSTRUCTION_MODELS = {"CIRIM": "cascades of recurrent inference machines, gradient of the likelihood as input"}
RECURRENT_CELLS = {"IndRNN": "element-wise recurrent weight", "ConvGRU": "convolutional GRU"}
APPROACHES = {
    "pretrained": "CIRIM trained alone, 2D segmentation trained on fully sampled images, chained at test time",
    "sequential": "2D segmentation trained on the reconstructions of the frozen, trained CIRIM",
    "end_to_end": "CIRIM followed by 2D segmentation, trained together on the combined loss, no coupling",
    "joint": "MTLRS cascades without the coupling: a segmentation in every cascade, hidden states untouched",
    "mtlrs": "MTLRS: each cascade's class probabilities x |image| are added into the next cascade's hidden states",
}
"""The ways to do reconstruction and segmentation that the MTLRS paper compares (and the uncoupled ablation)."""
CLASSIFIERS = {"logistic_regression": "L2-regularized logistic regression (scikit-learn, lbfgs)"}
SEGMENTATION_SUPERVISION = {
    "final_cascade": "only the last cascade's segmentation is in the loss (the public MTLRS code)",
    "every_cascade": "every cascade's segmentation, weights increasing over cascades (an autopipe option)",
}
COUPLINGS = {
    "every_class": "|image| x the probability of every foreground class, tiled over the hidden channels (the "
                   "public code tiles every segmentation class)",
    "lesion": "|image| x the lesion probability only (an ablation: a sparse signal where lesions are few)",
}
CLASS_WEIGHTS = {"balanced": "weights inversely proportional to class frequency", "none": "equal weights"}
HAND_FEATURES = {
    "lesion_map": "lesion fraction per cell of a coarse grid in template space",
    "lesion_load": "total lesion volume (ml)",
    "lesion_count": "number of lesions (26-connected components)",
    "largest_lesion": "volume of the largest lesion (ml)",
}


class PlanValueError(ValueError):
    """An invalid planned value; `key` is the field's path inside the component that raised it."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")


@dataclass(frozen=True, eq=False)  # hashed by identity, as type-hint metadata must be hashable
class Choice:
    """Annotation marker: the value must be one of `options`' keys."""

    options: Mapping[str, str]


def _reasons() -> Any:
    """The `reasons` field of every component: field name -> why the planner chose its value."""
    return field(default_factory=dict, repr=False)


def check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise PlanValueError(key, message)


def _check_positive(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        values = value if isinstance(value, tuple) else (value,)
        check(all(v is not None and v > 0 for v in values), name, f"must be > 0, got {value}")


@dataclass(frozen=True)
class HardwarePlan:
    """The device training will run on and what the planner assumed about it."""

    device: Annotated[str, Choice(DEVICES)]
    memory_gb: float
    throughput_gflops: float
    cpu_threads: int
    reasons: dict[str, str] = _reasons()

    def __post_init__(self) -> None:
        _check_positive(self, "memory_gb", "throughput_gflops", "cpu_threads")


@dataclass(frozen=True)
class BudgetPlan:
    """How long one configuration may train per fold, and the schedule constants around it."""

    hours_per_fold: float | None  # None: nnU-Net's full schedule
    min_iterations: int = 2000
    max_epochs: int = 1000
    iterations_per_epoch: int = 250
    reasons: dict[str, str] = _reasons()

    def __post_init__(self) -> None:
        _check_positive(self, "min_iterations", "max_epochs", "iterations_per_epoch")
        check(self.hours_per_fold is None or self.hours_per_fold > 0, "hours_per_fold",
              f"must be > 0 or null, got {self.hours_per_fold}")


@dataclass(frozen=True)
class SegmentationConfig:
    """One nnU-Net-style configuration (2d or 3d_fullres). Axes are in network order (transpose_forward)."""

    spacing: tuple[float, ...]
    median_shape: tuple[float, ...]
    patch_size: tuple[int, ...]
    batch_size: int
    n_stages: int
    features_per_stage: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]
    epochs: int
    iterations_per_epoch: int
    seconds_per_iteration: float
    training_hours: float
    network: Annotated[str, Choice(NETWORKS)] = "PlainConvUNet"
    n_conv_per_stage: int = N_CONV_PER_STAGE
    deep_supervision: bool = True
    optimizer: Annotated[str, Choice(OPTIMIZERS)] = "sgd"
    initial_lr: float = INITIAL_LR["sgd"]
    reasons: dict[str, str] = _reasons()

    @property
    def dim(self) -> int:
        return len(self.spacing)

    def __post_init__(self) -> None:
        check(self.dim in (2, 3), "spacing", f"2 or 3 values expected, got {self.dim}")
        for name in ("median_shape", "patch_size"):
            got = len(getattr(self, name))
            check(got == self.dim, name, f"{self.dim} values expected, got {got}")
        _check_positive(self, "spacing", "median_shape", "patch_size", "batch_size", "n_stages", "features_per_stage",
                        "epochs", "iterations_per_epoch", "n_conv_per_stage", "seconds_per_iteration",
                        "training_hours", "initial_lr")
        for name in ("features_per_stage", "kernel_sizes", "strides"):
            got = len(getattr(self, name))
            check(got == self.n_stages, name, f"{self.n_stages} entries expected (n_stages), got {got}")
        for name in ("kernel_sizes", "strides"):
            for i, entry in enumerate(getattr(self, name)):
                check(len(entry) == self.dim, f"{name}[{i}]", f"{self.dim} values expected, got {len(entry)}")
        check(all(k % 2 == 1 for entry in self.kernel_sizes for k in entry), "kernel_sizes", "odd sizes expected")
        check(all(s in (1, 2) for entry in self.strides for s in entry), "strides", "each stride must be 1 or 2")
        check(set(self.strides[0]) == {1}, "strides[0]", "the first stage does not pool: all ones expected")
        for axis, size in enumerate(self.patch_size):
            step = math.prod(s[axis] for s in self.strides)
            check(size % step == 0, "patch_size",
                  f"{size} (axis {axis}) is not a multiple of {step}, the product of the strides along that axis; "
                  f"use a multiple of {step} or change strides")


@dataclass(frozen=True)
class PreprocessingPlan:
    """Steps from a raw case to the network's input, in order."""

    skull_strip: Annotated[str, Choice(SKULL_STRIP_METHODS)]
    skull_strip_channel: int
    bias_field: tuple[Annotated[str, Choice(BIAS_FIELD_METHODS)], ...]
    template: Annotated[str, Choice(TEMPLATES)]
    registration_transform: Annotated[str, Choice(TRANSFORMS)]
    space: Annotated[str, Choice(SPACES)]
    target_spacing: tuple[float, float, float]
    normalization: tuple[Annotated[str, Choice(NORMALIZATIONS)], ...]
    lesion_labels: tuple[int, ...]
    field_of_view: Annotated[str, Choice(FIELDS_OF_VIEW)] = "whole_brain"
    coregistration: Annotated[str, Choice(TRANSFORMS)] = "Rigid"
    registration_spacing_mm: float = 2.0
    registration_seed: int = 12345
    n4_shrink_factor: int = 4
    n4_iterations: tuple[int, ...] = (50, 50, 50, 50)
    n4_tolerance: float = 1e-3
    image_order: int = 3
    label_order: int = 1
    crop_margin_mm: float = 4.0
    clip_percentiles: tuple[float, float] = (0.05, 99.95)
    coil_maps: Annotated[str, Choice(COIL_MAP_METHODS)] = "espirit"
    reasons: dict[str, str] = _reasons()

    @property
    def num_channels(self) -> int:
        return len(self.bias_field)

    def __post_init__(self) -> None:
        _check_positive(self, "target_spacing", "registration_spacing_mm", "n4_shrink_factor", "n4_iterations",
                        "n4_tolerance", "lesion_labels")
        check(len(self.target_spacing) == 3, "target_spacing", f"3 values expected, got {len(self.target_spacing)}")
        check(len(self.normalization) == len(self.bias_field), "normalization",
              f"one scheme per channel expected ({len(self.bias_field)} channels in bias_field), "
              f"got {len(self.normalization)}")
        check(0 <= self.skull_strip_channel < len(self.bias_field), "skull_strip_channel",
              f"a channel index 0-{len(self.bias_field) - 1} expected, got {self.skull_strip_channel}")
        check(self.field_of_view == "whole_brain" or self.space == "native", "space",
              "scans that hold no whole brain (field_of_view partial) cannot be registered to the brain template: "
              "use native")
        check(self.coregistration != "SyN", "coregistration",
              "channels of one session are co-registered with Rigid or Affine, not SyN")
        for name in ("image_order", "label_order"):
            check(getattr(self, name) in INTERPOLATION_ORDERS, name,
                  f"one of {sorted(INTERPOLATION_ORDERS)} expected ({', '.join(INTERPOLATION_ORDERS.values())}), "
                  f"got {getattr(self, name)}")
        check(self.crop_margin_mm >= 0, "crop_margin_mm", f"must be >= 0, got {self.crop_margin_mm}")
        clip = self.clip_percentiles
        check(len(clip) == 2 and 0 <= clip[0] < clip[-1] <= 100, "clip_percentiles",
              f"two percentiles 0 <= low < high <= 100 expected, got {list(self.clip_percentiles)}")


@dataclass(frozen=True)
class ReconstructionPlan:
    """CIRIM reconstruction from undersampled multicoil k-space (2D slices)."""

    cascades: int
    time_steps: int
    hidden_channels: int
    matrix: tuple[int, int]
    coils: int
    acceleration: float
    mask_type: Annotated[str, Choice(MASK_KINDS)]
    calibration_size: int
    epochs: int
    seconds_per_iteration: float
    model: Annotated[str, Choice(RECONSTRUCTION_MODELS)] = "CIRIM"
    recurrent_cell: Annotated[str, Choice(RECURRENT_CELLS)] = "IndRNN"
    batch_size: int = 1
    learning_rate: float = 1e-4
    cs_weights: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2)
    cs_iterations: int = 50
    reasons: dict[str, str] = _reasons()

    def __post_init__(self) -> None:
        _check_positive(self, "cascades", "time_steps", "hidden_channels", "matrix", "coils", "epochs",
                        "seconds_per_iteration", "batch_size", "learning_rate", "calibration_size", "cs_weights",
                        "cs_iterations")
        check(self.acceleration >= 1, "acceleration", f"must be >= 1, got {self.acceleration}")


@dataclass(frozen=True)
class MultitaskPlan:
    """MTLRS: joint reconstruction and segmentation coupled through the recurrent hidden states."""

    cascades: int
    time_steps: int
    hidden_channels: int
    segmentation_channels: int
    epochs: int
    seconds_per_iteration: float
    segmentation_poolings: int = 2
    segmentation_weight: float = 0.9
    reconstruction_weight: float = 0.1
    segmentation_supervision: Annotated[str, Choice(SEGMENTATION_SUPERVISION)] = "final_cascade"
    segmentation_classes: tuple[str, ...] = ("background", "lesion")  # dataset.json's labels, in value order
    lesion_classes: tuple[int, ...] = (1,)  # positions in segmentation_classes that are lesion
    coupling: Annotated[str, Choice(COUPLINGS)] = "every_class"
    approaches: tuple[Annotated[str, Choice(APPROACHES)], ...] = ("pretrained", "sequential", "end_to_end", "joint",
                                                                  "mtlrs")
    warm_start: bool = True  # end_to_end, joint and mtlrs start from the fold's trained CIRIM
    reasons: dict[str, str] = _reasons()

    def __post_init__(self) -> None:
        _check_positive(self, "cascades", "time_steps", "hidden_channels", "segmentation_channels", "epochs",
                        "seconds_per_iteration", "segmentation_poolings", "segmentation_weight",
                        "reconstruction_weight")
        check(len(self.approaches) > 0 and len(set(self.approaches)) == len(self.approaches), "approaches",
              f"one or more distinct approaches expected, got {list(self.approaches)}")
        check(len(self.segmentation_classes) >= 2 and len(set(self.segmentation_classes)) ==
              len(self.segmentation_classes), "segmentation_classes",
              f"background and at least one distinct class expected, got {list(self.segmentation_classes)}")
        check(len(self.lesion_classes) > 0 and all(0 < k < len(self.segmentation_classes)
                                                   for k in self.lesion_classes), "lesion_classes",
              f"positions 1..{len(self.segmentation_classes) - 1} of segmentation_classes expected, got "
              f"{list(self.lesion_classes)}")


@dataclass(frozen=True)
class HandFunctionPlan:
    """A classifier of hand function (impaired = 1) from lesion maps in template space."""

    features: tuple[Annotated[str, Choice(HAND_FEATURES)], ...]
    c_grid: tuple[float, ...]
    class_weight: Annotated[str, Choice(CLASS_WEIGHTS)]
    inner_folds: int
    grid_mm: float = 6.0
    smoothing_mm: tuple[float, ...] = (0.0,)  # Gaussian blurs of the lesion maps tried by inner CV (0 = none)
    model: Annotated[str, Choice(CLASSIFIERS)] = "logistic_regression"
    configuration: Annotated[str, Choice(CONFIGURATION_DIMS)] = "3d_fullres"  # whose segmentations feed it
    reasons: dict[str, str] = _reasons()

    def __post_init__(self) -> None:
        _check_positive(self, "c_grid", "inner_folds", "grid_mm")
        check(len(self.features) > 0, "features", "at least one feature expected")
        check(self.inner_folds >= 2, "inner_folds", f"must be >= 2, got {self.inner_folds}")
        check(len(self.smoothing_mm) > 0 and all(s >= 0 for s in self.smoothing_mm), "smoothing_mm",
              f"one or more blur widths >= 0 mm expected, got {list(self.smoothing_mm)}")


@dataclass(frozen=True)
class JointPlan:
    """The PVL work's future joint model: a hand-function head on the U-Net's whole-brain lesion map,
    L = L_seg + r L_cls, started from the trained plain U-Net."""

    hand_function_weight: float  # r
    configuration: Annotated[str, Choice(CONFIGURATION_DIMS)] = "3d_fullres"
    brain_every: int = 4  # a whole brain joins every brain_every-th training step
    reasons: dict[str, str] = _reasons()

    def __post_init__(self) -> None:
        check(self.hand_function_weight > 0, "hand_function_weight",
              f"r must be > 0 (0 is the plain U-Net), got {self.hand_function_weight}")
        check(self.brain_every >= 1, "brain_every", f"must be >= 1 (1 = a brain in every step), got "
                                                    f"{self.brain_every}")


@dataclass(frozen=True)
class Plans:
    """Everything `autopipe plan` decided for one cohort. Optional components exist only when the data allows."""

    dataset: str
    hardware: HardwarePlan
    budget: BudgetPlan
    transpose_forward: tuple[int, ...]
    configurations: dict[Annotated[str, Choice(CONFIGURATION_DIMS)], SegmentationConfig]
    preprocessing: PreprocessingPlan
    reconstruction: ReconstructionPlan | None = None
    multitask: MultitaskPlan | None = None
    hand_function: HandFunctionPlan | None = None
    joint: JointPlan | None = None
    format_version: int = FORMAT_VERSION
    reasons: dict[str, str] = _reasons()

    UNWRAPPED = ("dataset", "format_version")  # plain JSON values, not planned

    def __post_init__(self) -> None:
        check(self.format_version == FORMAT_VERSION, "format_version",
              f"this autopipe reads format {FORMAT_VERSION}, got {self.format_version}; run `autopipe plan` again")
        check(sorted(self.transpose_forward) == [0, 1, 2], "transpose_forward",
              f"a permutation of 0, 1, 2 expected, got {list(self.transpose_forward)}")
        check("2d" in self.configurations, "configurations", "a '2d' configuration is required")
        for name, config in self.configurations.items():
            check(config.dim == CONFIGURATION_DIMS[name], f"configurations.{name}.spacing",
                  f"{CONFIGURATION_DIMS[name]} values expected, got {config.dim}")


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT = _Default()
"""Value placeholder for `planned`: use the dataclass's declared default (declared once, there)."""


def planned(cls: type, **values: tuple[object, str]) -> object:
    """Build a component from name=(value, reason) pairs: `planned(JointPlan, hand_function_weight=(0.1, "..."))`.

    A value of DEFAULT keeps the field's declared default and records the reason.
    """
    kwargs = {k: v for k, (v, _) in values.items() if v is not DEFAULT}
    return cls(**kwargs, reasons={k: r for k, (_, r) in values.items()})


def significant(value: float, digits: int = 4) -> float:
    """`value` rounded to `digits` significant digits, for readable plans (0.0001234 stays nonzero)."""
    return float(f"{value:.{digits}g}")

