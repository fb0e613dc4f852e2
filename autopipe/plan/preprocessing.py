"""The preprocessing plan: from a raw case to the network's input, decided from the fingerprint.

Order (autopipe.preprocess.case): reorient to RAS -> co-register further channels to the first ->
skull stripping (unless the heads look stripped) -> N4 inside the brain mask -> affine registration
to the MNI152 template shipped in nilearn (computed at 2 mm, where it takes ~2 s instead of ~35 s at
1 mm) -> one resampling of each channel onto the training grid (template or native axes at the
target spacing, cropped to the brain) -> z-score inside the brain -> lesion labels binarized.
"""

from __future__ import annotations

from autopipe.plan.configs import DEFAULT, PreprocessingPlan, planned

ANISOTROPY_NATIVE = 3.0
TEMPLATE = "mni152_2009a_sym"
T1_WORDS = ("t1",)
CT_WORDS = ("ct",)


def is_ct(name: str) -> bool:
    return name.strip().lower() in CT_WORDS


def plan_preprocessing(channel_names: dict[int, str], skull_stripped: dict, target_spacing: tuple[float, ...],
                       lesion_labels: tuple[int, ...], labels: dict[str, int]) -> PreprocessingPlan:
    """Preprocessing for a cohort: `skull_stripped` is the fingerprint's cohort verdict with its evidence."""
    names = [channel_names[i] for i in sorted(channel_names)]
    lesion_names = [n for n, v in labels.items() if v in lesion_labels]
    strip, strip_channel = _skull_strip(names, skull_stripped)
    return planned(
        PreprocessingPlan,
        skull_strip=strip,
        skull_strip_channel=strip_channel,
        bias_field=(tuple("none" if is_ct(n) else "n4" for n in names),
                    "N4 for MRI channels (bias fields are an MRI artefact); none for CT"),
        template=(TEMPLATE, "shipped in nilearn (no download); skull-stripped like the brains it is "
                                      "registered with"),
        registration_transform=("Affine", "aligns head size and pose in ~2 s at 2 mm, so lesion maps of different "
                                          "patients compare voxel by voxel; SyN (~5 s) would also warp the lesions"),
        space=(preprocessing_space(target_spacing), _space_reason(target_spacing)),
        target_spacing=(tuple(float(s) for s in target_spacing), "the segmentation target spacing (RAS axis order)"),
        normalization=(tuple("ct" if is_ct(n) else "zscore_brain" for n in names),
                       "MRI: z-score per image inside the brain mask (lesions are too small to normalize by); "
                       "CT: cohort percentiles"),
        lesion_labels=(lesion_labels, f"labels {', '.join(lesion_names)} become lesion (1), the rest 0"),
        coregistration=(DEFAULT, "channels of one session differ by head motion: 6 parameters"
                        if len(names) > 1 else "one channel: nothing to co-register"),
        registration_spacing_mm=(DEFAULT, "transforms computed at 2 mm (~35 s -> ~2 s per case), applied at full "
                                          "resolution"),
        registration_seed=(DEFAULT, "fixed, so registration repeats exactly"),
        n4_shrink_factor=(DEFAULT, "shrink 4: ~13 s per head; shrink 2 takes ~250 s for the same quality"),
        n4_iterations=(DEFAULT, "4 levels x 50 iterations (ITK's usual schedule)"),
        n4_tolerance=(DEFAULT, "25% faster than 1e-7 at the same white-matter uniformity"),
        image_order=(DEFAULT, "cubic B-spline for images (nnU-Net)"),
        label_order=(DEFAULT, "linear, then threshold at 0.5: no new lesion islands"),
        crop_margin_mm=(DEFAULT, "the crop keeps 4 mm around the brain mask, so a slightly tight mask cuts no "
                                 "cortex from the network's view"),
        clip_percentiles=(DEFAULT, "statistics over brain voxels clipped to these percentiles: robust to a few hot "
                                   "voxels, keeps lesions"),
        coil_maps=(DEFAULT, "k-space cohorts: ESPIRiT maps from the calibration region of the undersampled data"),
    )  # type: ignore[return-value]


def _skull_strip(names: list[str], evidence: dict) -> tuple[tuple[str, str], tuple[int, str]]:
    seen = f"{evidence['cases_looking_stripped']}/{evidence['cases']} cases look skull-stripped"
    if evidence["value"]:
        return ("none", f"{seen} (constant background): the brain is the non-zero region"), \
            (0, "the first channel defines the brain")
    method = ("deepbet", f"{seen}; deepbet: Dice 0.97 on a real T1 head and 0.97-0.98 on synthetic T1 and FLAIR "
                         "heads, 2 s per case (the template method reaches 0.89-0.91)")
    t1 = next((i for i, n in enumerate(names) if any(w in n.lower() for w in T1_WORDS)), None)
    if t1 is None:
        return method, (0, "no T1 channel: the first channel")
    return method, (t1, f"channel {t1} ({names[t1]}): deepbet was trained on T1")


def preprocessing_space(target_spacing: tuple[float, ...]) -> str:
    """'template' unless the target spacing is anisotropic (> 3x): thick slices stay along their own axis."""
    return "native" if max(target_spacing) / min(target_spacing) > ANISOTROPY_NATIVE else "template"


def _space_reason(target_spacing: tuple[float, ...]) -> str:
    anisotropy = max(target_spacing) / min(target_spacing)
    if anisotropy > ANISOTROPY_NATIVE:
        return (f"target anisotropy {anisotropy:.2g} > 3: thick slices stay along their own axis instead of being "
                "rotated into template axes")
    return (f"target anisotropy {anisotropy:.2g} <= 3: train in template space, where heads share pose and size "
            "and lesion maps compare across patients")
