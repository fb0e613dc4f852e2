"""The report's sections about the segmentation models: the plan, training curves, cross-validation with the
configuration decision, and postprocessing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from autopipe.evaluate.metrics import METRIC_DEFINITIONS
from autopipe.layout import (
    COMPARISON_FOLDER,
    HAND_FOLDER,
    POSTPROCESSING_FILE,
    RECONSTRUCTION_FOLDER,
    SUMMARY_FILE,
    best_configuration,
    crossval_dir,
)
from autopipe.report.context import ReportContext, read_json_or_none
from autopipe.report.document import Section, fmt, mean_std

CROSSVAL_METRICS = (("dice", "Dice"), ("voe", "VOE"), ("lesion_f1", "lesion F1"),
                    ("per_lesion_dice", "per-lesion Dice"), ("hd95_mm", "HD95 mm"), ("avd_ml", "AVD ml"))
PLAN_WIDTHS = ("13rem", "15rem")  # key, value; the reason takes the rest
NOT_CONFIGURATIONS = {RECONSTRUCTION_FOLDER, HAND_FOLDER, ".cache", ".locks"}


def plan_section(ctx: ReportContext) -> Section:
    """Every planned value beside the reason it was chosen, one table per component of plans.json."""
    section = Section("plan", "Plan")
    path = ctx.plans_dir / "plans.json"
    plans = read_json_or_none(path)
    if not isinstance(plans, dict):
        section.missing("there is no plan yet", ctx.command("plan"))
        return section
    section.text(f"Every value autopipe planned, with the reason it was chosen ({path}; sha256 "
                 f"{plan_digest(path)}). Edit a value there and rerun the stages after `plan` to change it.",
                 style="lead")
    scalars = [(k, v) for k, v in plans.items() if not isinstance(v, dict)]
    if scalars:
        section.facts(scalars)
    for key, value in plans.items():
        if not isinstance(value, dict):
            continue
        if _is_leaf(value):
            section.table(["value", "reason"], [[_value(value["value"]), value["reason"]]], caption=key,
                          widths=PLAN_WIDTHS[1:])
        elif key == "configurations":
            for name, config in value.items():
                section.table(["key", "value", "reason"], _plan_rows(config), caption=f"configuration {name}",
                              widths=PLAN_WIDTHS)
        else:
            section.table(["key", "value", "reason"], _plan_rows(value), caption=key, widths=PLAN_WIDTHS)
    return section


def plan_digest(path: Path) -> str:
    """The first 16 hex digits of plans.json's sha256: which plan a result was made with."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return "n/a"


def _is_leaf(value: object) -> bool:
    return isinstance(value, dict) and set(value) == {"value", "reason"}


def _plan_rows(component: dict, prefix: str = "") -> list[list]:
    rows = []
    for key, value in component.items():
        name = f"{prefix}{key}"
        if _is_leaf(value):
            rows.append([name, _value(value["value"]), value["reason"]])
        elif isinstance(value, dict):
            rows += _plan_rows(value, f"{name}.")
        else:
            rows.append([name, _value(value), "–"])
    return rows


def _value(value: object) -> str:
    """A planned value as plans.json writes it (true, null, [[3, 3], [3, 3]]), a text without its quotes."""
    return value if isinstance(value, str) else json.dumps(value)


def configuration_dirs(ctx: ReportContext) -> list[Path]:
    """Folders under results/DATASET that hold a trained model's folds (segmentation and joint U-Nets)."""
    if not ctx.results_dir.is_dir():
        return []
    return sorted(d for d in ctx.results_dir.iterdir()
                  if d.is_dir() and d.name not in NOT_CONFIGURATIONS and any(d.glob("fold_*")))


def training_section(ctx: ReportContext) -> Section:
    """Per configuration and fold: the last epoch's numbers (progress.json) and the curves (progress.png)."""
    section = Section("training", "Training")
    runs = [fold for config in configuration_dirs(ctx) for fold in sorted(config.glob("fold_*"))]
    recon = ctx.results_dir / RECONSTRUCTION_FOLDER
    if recon.is_dir():
        runs += sorted(f for m in sorted(recon.iterdir()) if m.is_dir() and m.name != COMPARISON_FOLDER
                       for f in m.glob("fold_*") if (f / "progress.json").is_file())
    runs = [r for r in runs if (r / "progress.json").is_file() or (r / "progress.png").is_file()]
    if not runs:
        section.missing("no model is trained yet", ctx.command("train 0"))
        return section
    rows = []
    for run in runs:
        history = read_json_or_none(run / "progress.json")
        last = history[-1] if isinstance(history, list) and history and isinstance(history[-1], dict) else {}
        trained = (run / "checkpoint_final.pt").is_file()
        epochs = last["epoch"] + 1 if isinstance(last.get("epoch"), int) else None  # records count from 0
        rows.append([_run_name(ctx, run), run.name.removeprefix("fold_"), epochs,
                     "finished" if trained else "in progress or stopped", fmt(last.get("train_loss")),
                     fmt(last.get("val_loss")), fmt(last.get("ema_pseudo_dice", last.get("pseudo_dice")))])
    section.table(["model", "fold", "epochs", "state", "train loss", "val. loss", "pseudo Dice"], rows,
                  caption="the last epoch of every run (progress.json)",
                  notes=["pseudo Dice: Dice of the validation patches (slices for k-space models) pooled per epoch, a "
                         "training-time signal (its moving average for the U-Nets, which picks their best "
                         "checkpoint); the cross-validation below scores whole held-out scans"])
    for run in runs:
        section.figure(run / "progress.png", f"{_run_name(ctx, run)}, fold {run.name.removeprefix('fold_')}: "
                                             "loss, pseudo Dice, learning rate, seconds per epoch", size="half")
    return section


def _run_name(ctx: ReportContext, run: Path) -> str:
    return run.parent.relative_to(ctx.results_dir).as_posix()


def crossval_section(ctx: ReportContext) -> tuple[Section, dict | None]:
    """Pooled cross-validation metrics per configuration and the decision best_configuration.json records.
    Also returns the evidence for the summary: {"chosen", "reason", "dice", "definition"} or None."""
    section = Section("crossval", "Cross-validation and the configuration decision")
    summaries = {d.name: s for d in configuration_dirs(ctx)
                 if isinstance(s := read_json_or_none(crossval_dir(d) / SUMMARY_FILE), dict)}
    if not summaries:
        section.missing("no cross-validation summary yet (train folds, then evaluate them)", ctx.command("evaluate"))
    else:
        rows = [[name, ", ".join(map(str, s.get("folds", []))),
                 *(mean_std((s.get("pooled") or {}).get(key)) for key, _ in CROSSVAL_METRICS),
                 mean_std((s.get("across_folds") or {}).get("dice"))] for name, s in summaries.items()]
        section.table(["configuration", "folds", *(t for _, t in CROSSVAL_METRICS), "Dice across folds"], rows,
                      caption="held-out cases of every validated fold pooled, mean ± sd over cases "
                              "(crossval/summary.json)",
                      notes=[f"{title}: {METRIC_DEFINITIONS[key]}" for key, title in CROSSVAL_METRICS]
                      + ["Dice across folds: mean ± sd of the folds' mean Dice"])
    decision = read_json_or_none(best_configuration(ctx.workspace, ctx.dataset))
    if not isinstance(decision, dict):
        section.missing("no configuration decision yet (best_configuration.json: needs every fold validated)",
                        ctx.command("evaluate"))
        return section, _evidence_from_summaries(summaries, ctx.command("evaluate"))
    section.text(f"Chosen for `autopipe predict`: {decision.get('chosen')} — "
                 f"{without_name(decision.get('reason', ''), decision.get('chosen'))}", style="lead")
    candidates = decision.get("candidates") or {}
    section.table(["candidate", "mean Dice", "mean lesion F1", "cases", ""],
                  [[name, fmt(m.get("dice"), 4), fmt(m.get("lesion_f1")), m.get("cases"),
                    "chosen" if name == decision.get("chosen") else ""] for name, m in candidates.items()],
                  caption="candidates scored on the same pooled held-out cases (best_configuration.json)",
                  row_styles=["good" if name == decision.get("chosen") else "" for name in candidates],
                  notes=[f"{k}: {v}" for k, v in (decision.get("definitions") or {}).items()])
    paired = decision.get("paired")
    if isinstance(paired, dict):
        section.facts([("runner-up", paired.get("runner_up")),
                       ("mean Dice difference", fmt(paired.get("mean_difference"), 4)),
                       ("cases better / worse", f"{paired.get('wins')} / {paired.get('losses')}"),
                       ("test", paired.get("test")),
                       ("p", fmt(paired.get("p"), 3)), ("n (non-zero differences)", paired.get("n"))],
                      caption="paired comparison with the runner-up, per case")
    chosen = candidates.get(decision.get("chosen"), {})
    definition = (decision.get("definitions") or {}).get("dice", METRIC_DEFINITIONS["dice"])
    return section, {"chosen": decision.get("chosen"), "reason": decision.get("reason", ""),
                     "dice": chosen.get("dice"), "cases": chosen.get("cases"), "definition": definition}


def without_name(reason: str, name: object) -> str:
    """A decision's reason without the chosen name it starts with ("3d_fullres: mean Dice ..." -> "mean Dice ...")."""
    return reason.removeprefix(f"{name}: ")


def _evidence_from_summaries(summaries: dict[str, dict], command: str) -> dict | None:
    """Without a decision, the configuration with the best pooled Dice so far (said to be provisional)."""
    scored = {n: s["pooled"]["dice"]["mean"] for n, s in summaries.items()
              if isinstance((s.get("pooled") or {}).get("dice"), dict) and s["pooled"]["dice"].get("mean") is not None}
    if not scored:
        return None
    best = max(scored, key=scored.get)
    cases = summaries[best]["pooled"]["dice"].get("n")
    return {"chosen": best, "dice": scored[best], "cases": cases, "definition": METRIC_DEFINITIONS["dice"],
            "provisional": True,
            "reason": f"provisional: highest pooled Dice of the folds validated so far "
                      f"(best_configuration.json is written once every fold is: `{command}`)"}


def postprocessing_section(ctx: ReportContext) -> Section:
    """The minimum lesion volume `predict` removes below, per configuration, with the candidates it was chosen from."""
    section = Section("postprocessing", "Postprocessing")
    decision = read_json_or_none(best_configuration(ctx.workspace, ctx.dataset))
    if isinstance(decision, dict) and isinstance(decision.get("postprocessing"), dict):
        post = decision["postprocessing"]
        section.text(f"For {decision.get('chosen')} (used by predict): minimum lesion volume "
                     f"{fmt(post.get('min_lesion_volume_mm3'), 0)} mm³ — {post.get('reason', '')}", style="lead")
    found = False
    for folder in configuration_dirs(ctx):
        post = read_json_or_none(crossval_dir(folder) / POSTPROCESSING_FILE)
        if not isinstance(post, dict):
            continue
        found = True
        section.table(["minimum lesion volume (mm³)", "mean Dice", "mean lesion F1"],
                      [[fmt(c.get("min_lesion_volume_mm3"), 0), fmt(c.get("dice"), 4), fmt(c.get("lesion_f1"), 4)]
                       for c in post.get("candidates", [])],
                      caption=f"{folder.name}: {fmt(post.get('min_lesion_volume_mm3'), 0)} mm³ chosen",
                      row_styles=["good" if c.get("min_lesion_volume_mm3") == post.get("min_lesion_volume_mm3")
                                  else "" for c in post.get("candidates", [])],
                      notes=[post.get("reason", "")])
    if not found:
        section.missing("no postprocessing decision yet", ctx.command("evaluate"))
    return section
