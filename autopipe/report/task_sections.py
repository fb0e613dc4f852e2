"""The report's sections about the other tasks: the reconstruction comparison (accelerated MRI) and hand function."""

from __future__ import annotations

from autopipe.layout import SUMMARY_FILE, comparison_dir, hand_dir
from autopipe.report.context import ReportContext, read_json_or_none
from autopipe.report.document import Section, fmt, mean_std

RECONSTRUCTION_COLUMNS = (("ssim", "SSIM", 3), ("psnr", "PSNR dB", 2), ("nmse", "NMSE", 4), ("dice", "lesion Dice", 3),
                          ("per_lesion_dice", "per-lesion Dice", 3), ("dice_combined", "tissue+lesion Dice", 3))
HAND_METRICS = (("accuracy", "accuracy"), ("f1", "F1"), ("balanced_accuracy", "balanced acc."),
                ("roc_auc", "ROC AUC"), ("log_loss", "log loss"))


def reconstruction_section(ctx: ReportContext) -> Section:
    """Every reconstruction method's image quality and segmentation, pooled over folds (comparison/summary.json)."""
    section = Section("reconstruction", "Reconstruction comparison")
    folder = comparison_dir(ctx.workspace, ctx.dataset)
    summary = read_json_or_none(folder / SUMMARY_FILE)
    if not isinstance(summary, dict) or not isinstance(summary.get("methods"), dict):
        section.missing("no reconstruction comparison yet (needs a cohort with k-space and trained k-space models)",
                        ctx.command("evaluate"))
        return section
    methods = summary["methods"]
    columns = [c for c in RECONSTRUCTION_COLUMNS if any(c[0] in m for m in methods.values())]
    section.text(f"{max((m.get('subjects', 0) for m in methods.values()), default=0)} subject(s) of fold(s) "
                 f"{', '.join(map(str, summary.get('folds', [])))}, mean ± sd over subjects.", style="lead")
    section.table(["method", *(t for _, t, _ in columns), "s / slice"],
                  [[name, *(mean_std(m.get(key), digits) for key, _, digits in columns),
                    fmt(m.get("seconds_per_slice"), 3)] for name, m in methods.items()],
                  caption="reconstruction and segmentation per method (comparison/summary.json)",
                  notes=[f"{k}: {v}" for k, v in (summary.get("definitions") or {}).items()])
    tests = [(name, metric, t) for name, m in methods.items()
             for metric, t in (m.get("wilcoxon_vs_mtlrs") or {}).items()]
    if tests:
        section.table(["method", "metric", "median difference vs MTLRS", "Wilcoxon p", "n"],
                      [[name, metric, fmt(t.get("median_difference")), fmt(t.get("p")), t.get("n")]
                       for name, metric, t in tests], caption="paired against MTLRS, per subject")
    pooled = summary.get("spearman_subject_means")
    if isinstance(pooled, dict) and pooled.get("rho") is not None:
        section.text(f"Spearman SSIM vs per-lesion Dice, each subject once: rho {fmt(pooled['rho'], 2)} "
                     f"(p {fmt(pooled.get('p'))}, n {pooled.get('n')}).")
    for picture in sorted(folder.glob("*.png")):
        section.figure(picture, picture.name)
    return section


def hand_function_section(ctx: ReportContext) -> tuple[Section, dict | None]:
    """Held-out hand-function metrics per model with bootstrap intervals, paired comparisons, the calibration plot
    and the mean coefficient maps. Also returns the evidence for the summary (None without summary.json)."""
    section = Section("hand-function", "Hand function")
    folder = hand_dir(ctx.workspace, ctx.dataset)
    summary = read_json_or_none(folder / SUMMARY_FILE)
    if not isinstance(summary, dict) or not isinstance(summary.get("models"), dict):
        section.missing("no hand-function evaluation yet (needs clinical labels and trained predictors)",
                        ctx.command("evaluate"))
        return section, None
    models = summary["models"]
    rows = []
    for name, m in models.items():
        pooled = m.get("pooled") or {}
        intervals = pooled.get("ci") or {}
        rows.append([name, pooled.get("n"), ", ".join(map(str, m.get("folds_scored", []))),
                     *(_with_interval(pooled.get(key), intervals.get(key)) for key, _ in HAND_METRICS)])
    level = (summary.get("bootstrap") or {}).get("level", 0.95)
    definitions = summary.get("definitions") or {}
    section.table(["model", "n", "folds", *(t for _, t in HAND_METRICS)], rows,
                  caption=f"held-out subjects of every fold pooled, [{level:.0%} bootstrap interval] (summary.json)",
                  notes=[f"{m}: {d.get('description', '')}" for m, d in models.items()]
                  + [f"{k}: {v}" for k, v in definitions.items()])
    per_fold = [[name, k, f.get("n"), *(fmt(f.get(key)) for key, _ in HAND_METRICS)]
                for name, m in models.items() for k, f in (m.get("folds") or {}).items() if isinstance(f, dict)]
    if per_fold:
        section.table(["model", "fold", "n", *(t for _, t in HAND_METRICS)], per_fold,
                      caption="each fold's held-out subjects")
    comparisons = summary.get("comparisons") or {}
    if comparisons:
        section.table(["pair (a vs b)", "accuracy a − b", "log loss a − b", "McNemar p", "n"],
                      [[pair, _with_interval(c.get("accuracy_difference"), c.get("accuracy_difference_ci")),
                        _with_interval(c.get("log_loss_difference"), c.get("log_loss_difference_ci")),
                        fmt(c.get("mcnemar_p")), c.get("n")] for pair, c in comparisons.items()],
                      caption="paired on the same subjects")
    reference = summary.get("reference")
    if isinstance(reference, dict):
        section.text(f"Reference ({reference.get('source')}): accuracy {reference.get('accuracy')}, "
                     f"F1 {reference.get('f1')}.", style="note")
    for variant, info in (summary.get("coefficient_map") or {}).items():
        share = (info or {}).get("weight_in_generating_region")
        if isinstance(share, dict) and share.get("positive") is not None:
            section.text(f"{variant} map: {share['positive']:.0%} of the positive weight lies in the region that "
                         f"generated the labels (a map spread evenly over the brain: {share.get('chance', 0):.0%}).")
    section.figure(folder / "calibration.png", "calibration: pooled held-out probabilities against observed rates")
    for name, caption in (("coefficients_mean.png", "lesion-map weights of the `predicted` model, mean over folds"),
                          ("coefficients_oracle_mean.png", "lesion-map weights of the oracle, mean over folds")):
        section.figure(folder / name, caption)
    best = models.get("predicted") or next(iter(models.values()))
    name = "predicted" if "predicted" in models else next(iter(models))
    pooled = best.get("pooled") or {}
    return section, {"model": name, "accuracy": pooled.get("accuracy"), "n": pooled.get("n"),
                     "interval": (pooled.get("ci") or {}).get("accuracy"), "level": level}


def _with_interval(value: object, interval: object) -> str:
    text = fmt(value)
    if isinstance(interval, list | tuple) and len(interval) == 2:
        text += f" [{fmt(interval[0])}, {fmt(interval[1])}]"
    return text
