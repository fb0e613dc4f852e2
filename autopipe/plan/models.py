"""The models besides the segmentation U-Net, each planned only when the cohort has the data for it.

- Reconstruction (CIRIM) needs k-space. Size: the published 5 cascades x 8 time steps x 64 hidden
  channels where the device trains it in time and memory; on a CPU the first of a ladder of smaller
  sizes whose `min_iterations` slice steps fit the time budget. Acceleration, mask type and
  calibration size are the ones measured in the data.
- Multitask MTLRS (reconstruction + segmentation coupled through the hidden states) needs k-space
  and lesion labels for its slices (in the k-space file, or labelsTr through slice_indices).
- Hand-function predictor (logistic regression on lesion maps pooled to a 6 mm template grid plus
  lesion-load summaries) needs clinical labels: at least 2 cases in each class.
- Joint loss weight r for the future joint segmentation + hand-function model, with both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from autopipe.cohort.label_classes import class_order, lesion_positions
from autopipe.mri.masks import MASK_KINDS
from autopipe.plan.configs import (
    DEFAULT,
    BudgetPlan,
    HandFunctionPlan,
    HardwarePlan,
    JointPlan,
    MultitaskPlan,
    ReconstructionPlan,
    planned,
    significant,
)

# (cascades, time steps, hidden channels), largest first: published CIRIM, then narrower and shallower; at
# least 2 cascades, since MTLRS couples a cascade's segmentation into the next one (1 cascade = end_to_end)
RECON_LADDER = ((5, 8, 64), (5, 8, 32), (3, 8, 32), (2, 4, 32), (2, 4, 16))
TIME_STEP_OVERHEAD_S = 0.006  # measured on 2 CPU cores: FFTs, small ops and autograd per time step, fwd + bwd
PUBLISHED_STEPS = 20000  # below this many training steps the published rate 1e-4 barely moves the network
SHORT_RUN_LR = 1e-3
RECON_MAX_EPOCHS = 50  # the MS configuration of MTLRS
BYTES_PER_VALUE = 4
TRAIN_FRACTION = 0.8  # share of slices in a training fold (5 folds)
C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
SMOOTHING_MM = (0.0, 6.0, 12.0)
BALANCED_BELOW = 0.4  # minority share under which classes are weighted
JOINT_HAND_WEIGHT = 0.1
JOINT_BRAIN_EVERY = 4


def rim_forward_flops(matrix: tuple[int, int], coils: int, hidden: int) -> float:
    """FLOPs of one RIM time step on one slice: the five layers plus the likelihood gradient's FFTs.

    Per pixel (multiply-adds): conv 4->h k5, IndRNN input 1x1 h->h, conv h->h k3, IndRNN h->h, conv h->2 k3.
    Gradient: per coil a forward and an inverse 2D FFT (5 N log2 N each) and the coil products.
    """
    pixels = matrix[0] * matrix[1]
    macs = pixels * (4 * hidden * 25 + hidden * hidden + hidden * hidden * 9 + hidden * hidden + hidden * 2 * 9)
    ffts = coils * 2 * 5 * pixels * math.log2(pixels) + coils * 4 * 6 * pixels
    return 2.0 * macs + ffts


def attention_unet_forward_flops(matrix: tuple[int, int], channels: int, poolings: int = 2) -> float:
    """FLOPs of the 2D segmentation network (two 3x3 convs per level, features doubling; decoder ~ encoder)."""
    pixels, macs, c_in = matrix[0] * matrix[1], 0.0, 1
    for level in range(poolings + 1):
        c = channels * 2**level
        macs += pixels / 4**level * 9 * (c_in * c + c * c)
        c_in = c
    return 2.0 * 2 * macs


def recon_activation_gb(matrix: tuple[int, int], coils: int, cascades: int, steps: int, hidden: int) -> float:
    """Memory kept for the backward pass of one slice: about 5 hidden-sized maps per time step plus coil images."""
    pixels = matrix[0] * matrix[1]
    values = cascades * steps * pixels * (5 * hidden + 4) + 4 * coils * pixels
    return values * BYTES_PER_VALUE / 2**30


def plan_reconstruction(kspace: dict | None, hardware: HardwarePlan, budget: BudgetPlan,
                        like_multitask: bool = False) -> ReconstructionPlan | None:
    """CIRIM sized to the data and the device; None without k-space.

    like_multitask: size it as MTLRS is sized (the ladder with the segmentation's cost), so that the
    approaches of the comparison share one reconstruction network and differ only in how they train.
    """
    if not kspace:
        return None
    matrix, coils = tuple(kspace["matrix"]), int(kspace["coils"])
    size, _, size_reason = _fit_ladder(matrix, coils, hardware, budget, segmentation=like_multitask)
    if like_multitask:
        size_reason += "; the size MTLRS gets, so the approaches share one reconstruction network"
    seconds = _seconds(matrix, coils, size, hardware, segmentation=False)
    cascades, steps, hidden = size
    epochs, epochs_reason = _epochs(seconds, kspace, budget)
    acceleration = kspace["effective_acceleration_median"] or 1.0
    mask_type, mask_reason = _mask_type(kspace["mask_types"])
    return planned(
        ReconstructionPlan,
        cascades=(cascades, size_reason), time_steps=(steps, size_reason), hidden_channels=(hidden, size_reason),
        matrix=(matrix, f"k-space matrix of {kspace['cases']} cases"),
        coils=(coils, "receive coils in the k-space files"),
        acceleration=(round(acceleration, 3), "measured: matrix samples / mask samples, median over cases"),
        mask_type=(mask_type, mask_reason),
        calibration_size=(max(1, round(kspace["calibration_size_median"])),
                          "measured: fully sampled centre (median over cases)"),
        epochs=(epochs, epochs_reason),
        seconds_per_iteration=(significant(seconds), f"one slice: FLOPs / {hardware.throughput_gflops:g} GFLOP/s"),
        model=(DEFAULT, "recurrent reconstruction used inside MTLRS"),
        recurrent_cell=(DEFAULT, "the published default"),
        batch_size=(DEFAULT, "one slice per step (published)"),
        learning_rate=_learning_rate(epochs, kspace),
        cs_weights=(DEFAULT, "L1-wavelet weights tried for the compressed-sensing baseline; the fold's training "
                             "slices choose one (lowest NMSE)"),
        cs_iterations=(DEFAULT, "FISTA iterations of the compressed-sensing baseline"),
    )  # type: ignore[return-value]


def plan_multitask(kspace: dict | None, has_labels: bool, hardware: HardwarePlan, budget: BudgetPlan,
                   labels: dict[str, int] | None = None, lesion_labels: tuple[int, ...] = (1,)
                   ) -> MultitaskPlan | None:
    """MTLRS when there is k-space and labels for its slices; sized like the reconstruction. Its models segment
    every class of `labels` (dataset.json's), as MTLRS segments brain tissue and lesions."""
    if not kspace or not (has_labels or kspace["with_segmentation"]):
        return None
    matrix, coils = tuple(kspace["matrix"]), int(kspace["coils"])
    size, seconds, size_reason = _fit_ladder(matrix, coils, hardware, budget, segmentation=True)
    cascades, steps, hidden = size
    epochs, epochs_reason = _epochs(seconds, kspace, budget)
    source = "k-space files" if kspace["with_segmentation"] else "labelsTr through slice_indices"
    classes = class_order(labels or {"background": 0, "lesion": lesion_labels[0]})
    lesions = lesion_positions(classes, lesion_labels)
    return planned(
        MultitaskPlan,
        cascades=(cascades, size_reason), time_steps=(steps, size_reason), hidden_channels=(hidden, size_reason),
        segmentation_channels=(hidden, f"{size_reason}; segmentation labels from {source}"),
        epochs=(epochs, epochs_reason),
        seconds_per_iteration=(significant(seconds), f"one slice: FLOPs / {hardware.throughput_gflops:g} GFLOP/s"),
        segmentation_poolings=(DEFAULT, "published 2D Attention U-Net"),
        segmentation_weight=(DEFAULT, "published: 0.9 x (0.5 CE + 0.5 Dice), CE kept attached to the graph"),
        reconstruction_weight=(DEFAULT, "published: 0.1 x L1 over time steps, weights increasing over steps"),
        segmentation_supervision=(DEFAULT, "the public code supervises the last cascade's segmentation only; "
                                           "'every_cascade' adds the earlier ones with weights increasing over "
                                           "cascades, which leaves the final segmentation 0.46 of the "
                                           "segmentation loss in 5 cascades against 1 in end_to_end"),
        segmentation_classes=(tuple(classes), "every label dataset.json declares, in value order: MTLRS segments "
                                              "brain tissue and lesions where the labels have both"),
        lesion_classes=(lesions, "the classes whose labels are lesion labels: the lesion metrics and predicted "
                                 "lesion maps use them"),
        coupling=(DEFAULT, "the public code tiles |image x segmentation| of every class over the hidden channels"
                  + ("" if len(classes) > 2 else "; here that is the lesion class alone")),
        approaches=(DEFAULT, "the paper's comparison on the same folds: pretrained, sequential, end_to_end, joint "
                             "(MTLRS's cascades without the coupling, which separates the coupling's effect from "
                             "the cascades') and mtlrs"),
        warm_start=(DEFAULT, "end_to_end, joint and mtlrs start from the fold's trained CIRIM: from scratch, with "
                             "0.1 of the loss on the image, their reconstruction reached SSIM 0.69 where CIRIM alone "
                             "reached 0.93 (demo cohort, 5 min per model on 2 CPU cores)"),
    )  # type: ignore[return-value]


def plan_hand_function(clinical: dict | None, configurations: Sequence[str] = ("2d", "3d_fullres")
                       ) -> HandFunctionPlan | None:
    """Logistic regression when both classes have at least 2 labeled cases."""
    if not clinical:
        return None
    positives, negatives = clinical["impaired"], clinical["good"]
    minority = min(positives, negatives)
    if minority < 2:
        return None
    share = minority / (positives + negatives)
    weight = "balanced" if share < BALANCED_BELOW else "none"
    return planned(
        HandFunctionPlan,
        features=(("lesion_map", "lesion_load", "lesion_count", "largest_lesion"),
                  "where the lesions are (coarse template grid) and how much lesion there is"),
        c_grid=(C_GRID, f"inverse L2 strength searched by inner cross-validation ({positives + negatives} "
                         "labeled cases, many more map cells: strong regularization likely)"),
        class_weight=(weight, f"{positives} {clinical['positive']} / {negatives} {clinical['negative']}: minority "
                              f"{share:.0%} {'<' if share < BALANCED_BELOW else '>='} {BALANCED_BELOW:.0%}"),
        inner_folds=(min(5, minority), "at most 5, at most the minority class count"),
        grid_mm=(DEFAULT, "lesion maps in template space averaged over 6 mm cells"),
        smoothing_mm=(SMOOTHING_MM, "Gaussian blurs of the lesion maps tried by the inner cross-validation: on "
                                    "ground-truth maps of 200 synthetic subjects the blur lifted test accuracy from "
                                    "0.817 to 0.838 (Bayes limit 0.861; benchmarks/hand_oracle.py)"),
        model=(DEFAULT, "few labeled patients: a linear, regularized model"),
        configuration=_segmenter(configurations),
    )  # type: ignore[return-value]


def plan_joint(hand: HandFunctionPlan | None) -> JointPlan | None:
    """The joint segmentation + hand-function U-Net, on the configuration whose segmentations the predictor uses."""
    if hand is None:
        return None
    return planned(
        JointPlan,
        hand_function_weight=(JOINT_HAND_WEIGHT, "L = L_seg + r L_cls with r like MTLRS' auxiliary 0.1: on 150 "
                                                 "synthetic subjects r = 0.1 kept accuracy (0.850) and Dice (0.480), "
                                                 "r = 10 halved Dice (0.212) for no better accuracy"),
        configuration=(hand.configuration, "the head reads the lesion map of the U-Net whose segmentations the "
                                           "logistic regression uses, and starts from that U-Net, trained"),
        brain_every=(JOINT_BRAIN_EVERY, "a whole brain passes the U-Net as patch-sized tiles: at 2 mm 8 tiles of "
                                        "48^3, measured 4 s against 0.7 s for a batch of 2 patches (one thread), "
                                        "so one brain per 4 steps makes a step about 2.4 times as long"),
    )  # type: ignore[return-value]


def _segmenter(configurations: Sequence[str]) -> tuple[str, str]:
    if "3d_fullres" in configurations:
        return "3d_fullres", "3D U-Net segmentations: the PVL work's 3D Dice 76.2 vs 2D 71.5"
    return "2d", "the only U-Net planned"


def _fit_ladder(matrix: tuple[int, int], coils: int, hardware: HardwarePlan, budget: BudgetPlan,
                segmentation: bool) -> tuple[tuple[int, int, int], float, str]:
    """The first size on RECON_LADDER that fits memory and (on a CPU) min_iterations in the budget."""
    allowed = None
    if hardware.device == "cpu" and budget.hours_per_fold is not None:
        allowed = budget.hours_per_fold * 3600 / budget.min_iterations
    fitted = False
    for size in RECON_LADDER:
        seconds = _seconds(matrix, coils, size, hardware, segmentation)
        memory = recon_activation_gb(matrix, coils, *size) * (2 if segmentation else 1)
        fitted = memory <= hardware.memory_gb and (allowed is None or seconds <= allowed)
        if fitted:
            break
    cascades, steps, hidden = size
    limits = f"{hardware.memory_gb:g} GB" + (f" and {budget.min_iterations} it in {budget.hours_per_fold:g} h"
                                             if allowed else "")
    why = f"{cascades} cascades x {steps} steps x {hidden} channels: "
    if not fitted:
        why += f"smallest on the ladder, yet over {limits} ({memory:.1f} GB, {seconds:.2g} s/it)"
    elif size == RECON_LADDER[0]:
        why += f"published size, fits {limits}"
    else:
        why += f"largest on the ladder that fits {limits}"
    return size, seconds, why


def _seconds(matrix: tuple[int, int], coils: int, size: tuple[int, int, int], hardware: HardwarePlan,
             segmentation: bool) -> float:
    cascades, steps, hidden = size
    forward = cascades * steps * rim_forward_flops(matrix, coils, hidden)
    if segmentation:
        forward += cascades * attention_unet_forward_flops(matrix, hidden)
    overhead = cascades * steps * TIME_STEP_OVERHEAD_S * (2 if segmentation else 1)
    return 3.0 * forward / (hardware.throughput_gflops * 1e9) + overhead


def _epochs(seconds: float, kspace: dict, budget: BudgetPlan) -> tuple[int, str]:
    per_epoch = max(1, round(kspace["total_slices"] * TRAIN_FRACTION))
    if budget.hours_per_fold is None:
        return RECON_MAX_EPOCHS, f"published {RECON_MAX_EPOCHS} epochs of {per_epoch} slices"
    fit = int(budget.hours_per_fold * 3600 / (per_epoch * seconds))
    return max(1, min(RECON_MAX_EPOCHS, fit)), (f"{budget.hours_per_fold:g} h / ({per_epoch} slices x {seconds:.3g} s)"
                                                f", at most the published {RECON_MAX_EPOCHS}")


def _learning_rate(epochs: int, kspace: dict) -> tuple[float | object, str]:
    """The published 1e-4 for published-length runs; 1e-3 when the budget allows few steps (measured: at
    1e-4 a CIRIM trained for 500 steps stays at the zero-filled image's SSIM)."""
    steps = epochs * max(1, round(kspace["total_slices"] * TRAIN_FRACTION))
    if steps >= PUBLISHED_STEPS:
        return DEFAULT, "Adam 1e-4, inverse-square-root schedule with 10% warm-up (published)"
    return SHORT_RUN_LR, (f"Adam, inverse-square-root schedule with 10% warm-up; {SHORT_RUN_LR:g} instead of the "
                          f"published 1e-4 because {steps} steps < {PUBLISHED_STEPS}")


def _mask_type(types: dict[str, int]) -> tuple[str, str]:
    common = max(types, key=types.get)
    if common in MASK_KINDS:
        return common, f"as acquired ({types[common]} of {sum(types.values())} cases)"
    return "poisson", f"mask type '{common}' unknown: the MS configuration's 2D Poisson disc"
