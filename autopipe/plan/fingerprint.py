"""The cohort fingerprint: per-case measurements (autopipe.plan.case_fingerprint) gathered into one record.

Written to plans/DATASET/fingerprint.json. Besides nnU-Net's fingerprint (spacing, cropped shape,
crop ratio, foreground intensity statistics per channel) it holds what a lesion pipeline needs:
brain-region intensity statistics (lesions are too small to normalize by), lesion statistics,
what each scan holds (a whole brain? the skull still there?), the k-space acquisition and the clinical
label balance.
Geometry is also given in RAS axis order (`spacing_ras`, `shape_after_crop_ras`), the orientation
every case has after registration to the template, which is what the planner plans for.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from autopipe.anatomy.head_evidence import STRIPPED_MIN_SHARE
from autopipe.cohort.clinical import read_hand_function
from autopipe.cohort.dataset import DatasetSpec
from autopipe.errors import AutopipeError
from autopipe.executor import Workers, parallel_map
from autopipe.plan.case_fingerprint import CaseJob, CaseResult, fingerprint_case
from autopipe.plan.preprocessing import skull_strip_channel

LESION_WORDS = ("lesion", "wmh", "pvl", "plaque", "hyperintens")
GB_PER_CASE = 2.0  # peak of a task (deepbet included): 1.44-1.62 GB on real heads (benchmarks/fingerprint_memory.py)


def lesion_label_values(labels: dict[str, int]) -> tuple[int, ...]:
    """Label values that count as lesion: those named like one, else every foreground label."""
    named = [v for name, v in labels.items() if v > 0 and any(w in name.lower() for w in LESION_WORDS)]
    return tuple(sorted(named or [v for v in labels.values() if v > 0]))


def fingerprint_dataset(spec: DatasetSpec, case_ids: list[str], workers: Workers = 1, progress: bool = True) -> dict:
    """Fingerprint the training cases `case_ids` of a cohort (read-only)."""
    if not case_ids:
        raise AutopipeError("no training cases found in imagesTr", where=str(spec.root),
                            fix="add CASE_0000 images (see raw_data/README.md); `autopipe check` lists problems")
    lesion_labels = lesion_label_values(spec.labels)
    strip_channel, _ = skull_strip_channel([spec.channel_names[k] for k in sorted(spec.channel_names)])
    jobs = [CaseJob(case, tuple(spec.image_path(case, ch) for ch in spec.channel_names),
                    spec.label_path(case), spec.kspace_path(case), lesion_labels, strip_channel=strip_channel)
            for case in case_ids]
    results: list[CaseResult] = parallel_map(fingerprint_case, jobs, workers, "fingerprint", enabled=progress,
                                             memory_gb=GB_PER_CASE)
    failed = [r for r in results if r.error]
    if failed:
        listing = "; ".join(f"{r.case_id}: {r.error}" for r in failed[:5])
        raise AutopipeError(f"{len(failed)} case(s) could not be fingerprinted ({listing})", where=str(spec.root),
                            fix="run `autopipe check` and fix what it reports")
    cases = {r.case_id: r.record for r in results}
    return {
        "dataset": spec.name,
        "num_cases": len(cases),
        "channel_names": {str(k): v for k, v in spec.channel_names.items()},
        "labels": spec.labels,
        "lesion_labels": list(lesion_labels),
        "geometry": cohort_geometry(cases),
        "intensity": {name: {"foreground": intensity_stats([r.foreground[ch] for r in results]),
                             "brain": intensity_stats([r.brain[ch] for r in results])}
                      for ch, name in spec.channel_names.items()},
        "lesions": cohort_lesions(cases),
        "anatomy": cohort_anatomy(cases),
        "kspace": cohort_kspace(cases) if spec.kspace is not None else None,
        "clinical": clinical_balance(spec, case_ids),
        "cases": cases,
    }


def ras(values: list, ras_axes: list[int]) -> list:
    """Per-axis values in file order -> R-L, A-P, S-I order."""
    return [values[a] for a in ras_axes]


def cohort_geometry(cases: dict[str, dict]) -> dict:
    records = list(cases.values())
    spacing_ras = [ras(r["spacing"], r["ras_axes"]) for r in records]
    crop_ras = [ras(r["shape_after_crop"], r["ras_axes"]) for r in records]
    return {
        "spacing_ras": spacing_ras,
        "shape_after_crop_ras": crop_ras,
        "median_spacing_ras": [float(v) for v in np.median(spacing_ras, 0)],
        "median_shape_after_crop_ras": [float(v) for v in np.median(crop_ras, 0)],
        "median_crop_ratio": float(np.median([r["crop_ratio"] for r in records])),
        "orientations": dict(Counter(r["axcodes"] for r in records)),
    }


def intensity_stats(samples: list[np.ndarray]) -> dict | None:
    """nnU-Net's intensity properties of pooled samples; None when there were no voxels to sample."""
    values = np.concatenate([s for s in samples if s.size] or [np.zeros(0, np.float32)]).astype(np.float64)
    if values.size == 0:
        return None
    return {"mean": float(values.mean()), "median": float(np.median(values)), "std": float(values.std()),
            "min": float(values.min()), "max": float(values.max()),
            "percentile_00_5": float(np.percentile(values, 0.5)),
            "percentile_99_5": float(np.percentile(values, 99.5)), "samples": int(values.size)}


def cohort_lesions(cases: dict[str, dict]) -> dict | None:
    stats = [r["lesions"] for r in cases.values() if r.get("lesions") is not None]
    if not stats:
        return None
    volumes = [v for s in stats for v in s["volumes_mm3"]]
    return {
        "total_count": sum(s["count"] for s in stats),
        "median_count_per_case": float(np.median([s["count"] for s in stats])),
        "cases_without_lesions": sum(1 for s in stats if s["count"] == 0),
        "smallest_mm3": min(volumes) if volumes else None,
        "median_volume_mm3": float(np.median(volumes)) if volumes else None,
        "median_total_load_mm3": float(np.median([s["total_mm3"] for s in stats])),
        "max_total_load_mm3": max(s["total_mm3"] for s in stats),
    }


def cohort_anatomy(cases: dict[str, dict]) -> dict:
    """Per-case decisions of what each scan holds, counted: which cases hold no whole brain, which need stripping."""
    heads = {case: r["head"] for case, r in cases.items()}
    partial = sorted(c for c, h in heads.items() if not h["whole_brain"])
    strip = sorted(c for c, h in heads.items() if h["needs_strip"])
    return {
        "cases": len(heads),
        "whole_brain_cases": len(heads) - len(partial),
        "partial_cases": partial,
        "needs_strip_cases": strip,
        "stripped_cases": sorted(c for c, h in heads.items() if h["whole_brain"] and not h["needs_strip"]),
        "rule": "per case (autopipe.anatomy.head_evidence): a whole brain is in view when the scanned object is at "
                "least half the template brain's size on every axis; the skull is still there when the brain "
                f"extractor keeps less than {STRIPPED_MIN_SHARE:.0%} of the scanned object",
    }


def cohort_kspace(cases: dict[str, dict]) -> dict | None:
    records = [r["kspace"] for r in cases.values() if r.get("kspace") and "error" not in r["kspace"]]
    if not records:
        return None
    accelerations = [r["effective_acceleration"] for r in records if r["effective_acceleration"]]
    return {
        "cases": len(records),
        "coils": _most_common(r["coils"] for r in records),
        "matrix": _most_common(tuple(r["matrix"]) for r in records),
        "slices_per_case": _most_common(r["slices"] for r in records),
        "total_slices": sum(r["slices"] for r in records),
        "mask_types": dict(Counter(str(r["mask_type"]) for r in records)),
        "fully_sampled": all(r["fully_sampled"] for r in records),
        "effective_acceleration_median": float(np.median(accelerations)) if accelerations else None,
        "effective_acceleration_range": [min(accelerations), max(accelerations)] if accelerations else None,
        "calibration_size_median": float(np.median([r["calibration_size"] for r in records])),
        "with_segmentation": sum(1 for r in records if r["has_segmentation"]),
    }


def clinical_balance(spec: DatasetSpec, case_ids: list[str]) -> dict | None:
    """Hand-function labels of the training cases: counts per class, missing ones."""
    path = spec.clinical_path()
    if path is None:
        return None
    if not Path(path).is_file():
        raise AutopipeError("clinical file declared in dataset.json is missing", where=str(path),
                            fix="add it, or remove 'clinical' from dataset.json")
    try:
        labels = read_hand_function(path, spec.clinical)
    except (KeyError, ValueError) as exc:
        raise AutopipeError(f"cannot read the hand-function labels ({exc})", where=str(path),
                            fix="run `autopipe check` and fix what it reports") from exc
    values = {case: labels.get(case) for case in case_ids}
    return {
        "labels": values,
        "impaired": sum(1 for v in values.values() if v == 1),
        "good": sum(1 for v in values.values() if v == 0),
        "missing": sorted(c for c, v in values.items() if v is None),
        "positive": spec.clinical.positive,
        "negative": spec.clinical.negative,
    }


def _most_common(values) -> object:
    value = Counter(values).most_common(1)[0][0]
    return list(value) if isinstance(value, tuple) else value
