"""The preprocessing plan: from a raw case to the network's input, decided from the fingerprint.

Order (autopipe.preprocess.case): reorient to RAS -> co-register further channels to the first ->
skull stripping (per case: heads with skull only) -> N4 inside the brain mask -> affine registration
to the MNI152 template shipped in nilearn (computed at 2 mm, where it takes ~2 s instead of ~35 s at
1 mm) -> one resampling of each channel onto the training grid (template or native axes at the
target spacing, cropped to the brain) -> z-score inside the brain -> lesion labels binarized.

Cohorts whose scans hold no whole brain (crops such as hippocampus boxes) are planned as nnU-Net
plans them: native space, no stripping, no bias correction, no registration.
"""

from __future__ import annotations

from autopipe.plan.configs import DEFAULT, PreprocessingPlan, planned

ANISOTROPY_NATIVE = 3.0
TEMPLATE = "mni152_2009a_sym"
T1_WORDS = ("t1",)
CROP_RATIO_FOR_MASK = 0.75  # nnU-Net: normalize inside the non-zero mask when cropping removes > 25%
CT_WORDS = ("ct",)


def is_ct(name: str) -> bool:
    return name.strip().lower() in CT_WORDS


def plan_preprocessing(channel_names: dict[int, str], anatomy: dict, target_spacing: tuple[float, ...],
                       lesion_labels: tuple[int, ...], labels: dict[str, int],
                       median_crop_ratio: float = 1.0) -> PreprocessingPlan:
    """Preprocessing for a cohort: `anatomy` is the fingerprint's per-case evidence, counted (fingerprint.json)."""
    names = [channel_names[i] for i in sorted(channel_names)]
    lesion_names = [n for n, v in labels.items() if v in lesion_labels]
    whole = whole_brain_cohort(anatomy)
    any_brain = anatomy["whole_brain_cases"] > 0
    return planned(
        PreprocessingPlan,
        field_of_view=("whole_brain" if whole else "partial", _field_of_view_reason(anatomy)),
        skull_strip=_skull_strip(anatomy),
        skull_strip_channel=skull_strip_channel(names),
        bias_field=(tuple("none" if is_ct(n) or not any_brain else "n4" for n in names),
                    "N4 for MRI channels (bias fields are an MRI artefact); none for CT" if any_brain else
                    "no scan holds a whole brain: no bias correction, as nnU-Net"),
        template=(TEMPLATE, "shipped in nilearn (no download); skull-stripped like the brains it is "
                                      "registered with"),
        registration_transform=("Affine", "aligns head size and pose in ~2 s at 2 mm, so lesion maps of different "
                                          "patients compare voxel by voxel; SyN (~5 s) would also warp the lesions"),
        space=preprocessing_space(target_spacing, whole),
        target_spacing=(tuple(float(s) for s in target_spacing), "the segmentation target spacing (RAS axis order)"),
        normalization=_normalization(names, any_brain, median_crop_ratio),
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


def skull_strip_channel(names: list[str]) -> tuple[int, str]:
    """The channel skull stripping (and the evidence for it) runs on: T1 when there is one (deepbet's training
    contrast), else the first."""
    t1 = next((i for i, n in enumerate(names) if any(w in n.lower() for w in T1_WORDS)), None)
    if t1 is None:
        return 0, "no T1 channel: the first channel"
    return t1, f"channel {t1} ({names[t1]}): deepbet was trained on T1"


def whole_brain_cohort(anatomy: dict) -> bool:
    """Template space needs every case to hold a whole brain."""
    return anatomy["whole_brain_cases"] == anatomy["cases"]


def _field_of_view_reason(anatomy: dict) -> str:
    n, whole, partial = anatomy["cases"], anatomy["whole_brain_cases"], anatomy["partial_cases"]
    if whole == n:
        return f"all {n} cases hold a whole brain (fingerprint.json: cases.*.head)"
    listed = ", ".join(partial[:5]) + (", ..." if len(partial) > 5 else "")
    return (f"{len(partial)} of {n} cases hold no whole brain ({listed}): native space, no registration, as "
            "nnU-Net (fingerprint.json: cases.*.head)")


def _skull_strip(anatomy: dict) -> tuple[str, str]:
    if anatomy["whole_brain_cases"] == 0:
        return "none", "no case holds a whole brain: nothing to strip; the mask is the non-zero region (nnU-Net)"
    strip, stripped = anatomy["needs_strip_cases"], anatomy["stripped_cases"]
    return "auto", (f"decided per case from evidence, again when each case is preprocessed: {len(strip)} of "
                    f"{anatomy['cases']} cases are heads with skull (deepbet: Dice 0.968 on a real T1 head), "
                    f"{len(stripped)} already stripped; {anatomy['rule']}; set deepbet or none to force one method")


def _normalization(names: list[str], any_brain: bool, median_crop_ratio: float) -> tuple[tuple[str, ...], str]:
    if any_brain:
        return (tuple("ct" if is_ct(n) else "zscore_brain" for n in names),
                "MRI: z-score per image inside the brain mask (lesions are too small to normalize by); "
                "CT: cohort percentiles")
    inside = median_crop_ratio < CROP_RATIO_FOR_MASK
    scheme = "zscore_brain" if inside else "zscore"
    where = "inside the non-zero region" if inside else "over all voxels"
    compared = "<" if inside else ">="
    return (tuple("ct" if is_ct(n) else scheme for n in names),
            f"no whole brain in view: nnU-Net's z-score per image, {where} (median crop ratio "
            f"{median_crop_ratio:.2f} {compared} {CROP_RATIO_FOR_MASK}); CT: cohort percentiles")


def preprocessing_space(target_spacing: tuple[float, ...], whole_brain: bool = True) -> tuple[str, str]:
    """('template' or 'native', why): template when every scan holds a whole brain and the target spacing is not
    anisotropic (> 3x). The plan's only decision of the space; the rest of plan/ reads `PreprocessingPlan.space`."""
    if not whole_brain:
        return "native", ("not every scan holds a whole brain, so none is registered to the brain template "
                          "(nnU-Net's way)")
    anisotropy = max(target_spacing) / min(target_spacing)
    if anisotropy > ANISOTROPY_NATIVE:
        return "native", (f"target anisotropy {anisotropy:.2g} > 3: thick slices stay along their own axis instead of "
                          "being rotated into template axes")
    return "template", (f"target anisotropy {anisotropy:.2g} <= 3: train in template space, where heads share pose and "
                        "size and lesion maps compare across patients")
