"""The preprocessing plan: from a raw case to the network's input, decided from the fingerprint.

Order: skull stripping (only when the heads do not look stripped) -> N4 bias-field correction of
MRI channels inside the head mask -> registration to the MNI152 template shipped in nilearn
(computed at 2 mm, where Affine takes ~2 s instead of ~35 s at 1 mm, and applied once to the
full-resolution image as a physical-space transform, resampling to the target spacing in template
orientation) -> crop to the brain -> z-score normalization per channel inside the brain mask ->
lesion labels binarized (lesion 1, everything else 0).
"""

from __future__ import annotations

from autopipe.plan.configs import DEFAULT, PreprocessingPlan, planned

ANISOTROPY_SEPARATE_Z = 3.0
T1_WORDS = ("t1",)
CT_WORDS = ("ct",)


def is_ct(name: str) -> bool:
    return name.strip().lower() in CT_WORDS


def plan_preprocessing(channel_names: dict[int, str], skull_stripped: dict, target_spacing: tuple[float, ...],
                       lesion_labels: tuple[int, ...], labels: dict[str, int]) -> PreprocessingPlan:
    """Preprocessing for a cohort: `skull_stripped` is the fingerprint's cohort verdict with its evidence."""
    names = [channel_names[i] for i in sorted(channel_names)]
    anisotropy = max(target_spacing) / min(target_spacing)
    lesion_names = [n for n, v in labels.items() if v in lesion_labels]
    return planned(
        PreprocessingPlan,
        skull_strip=_skull_strip(names, skull_stripped),
        bias_field=(tuple("none" if is_ct(n) else "n4" for n in names),
                    "N4 for MRI channels (bias fields are an MRI artefact); none for CT"),
        template=("mni152_2009a_sym", "shipped in nilearn (no download); skull-stripped like the brains after step 1"),
        registration_transform=("Affine", "aligns head size and pose in ~2 s at 2 mm; SyN (~5 s) also warps "
                                          "anatomy, which lesion maps do not need"),
        registration_spacing_mm=(DEFAULT, "transform computed at 2 mm (~35 s -> ~2 s per case), applied at full "
                                          "resolution"),
        target_spacing=(tuple(float(s) for s in target_spacing),
                        "the segmentation target spacing, in template (RAS) axis order"),
        separate_z=(anisotropy > ANISOTROPY_SEPARATE_Z,
                    f"target anisotropy {anisotropy:.2g} {'>' if anisotropy > 3 else '<='} 3: "
                    + ("nearest neighbour along the thick axis (nnU-Net)" if anisotropy > 3 else "resample all axes")),
        normalization=(tuple("ct" if is_ct(n) else "zscore_brain" for n in names),
                       "MRI: z-score per image inside the brain mask (lesions are too small to normalize by); "
                       "CT: cohort percentiles"),
        lesion_labels=(lesion_labels, f"labels {', '.join(lesion_names)} become lesion (1), the rest 0"),
        n4_shrink_factor=(DEFAULT, "shrink 4: ~13 s per head; shrink 2 takes ~250 s for the same quality"),
        n4_iterations=(DEFAULT, "4 levels x 50 iterations (ITK's usual schedule)"),
        n4_tolerance=(DEFAULT, "25% faster than 1e-7 at the same white-matter uniformity"),
        image_order=(DEFAULT, "cubic spline for images (nnU-Net)"),
        label_order=(DEFAULT, "linear per label, then threshold at 0.5 (nnU-Net)"),
        crop_to_brain=(DEFAULT, "less background to train on; the brain mask defines the crop"),
    )  # type: ignore[return-value]


def _skull_strip(names: list[str], evidence: dict) -> tuple[str, str]:
    seen = f"{evidence['cases_looking_stripped']}/{evidence['cases']} cases look skull-stripped"
    if evidence["value"]:
        return "none", f"{seen} (constant background): already stripped"
    if any(any(w in n.lower() for w in T1_WORDS) for n in names):
        return "deepbet", f"{seen}; a T1 channel: deepbet (Dice 0.94-0.97, 2-4 s on CPU)"
    return "template", f"{seen}; no T1 channel: template registration works for any contrast (Dice ~0.9)"
