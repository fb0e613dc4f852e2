"""The box at the top of the report: the four answers a reader wants in under a minute, each with its evidence."""

from __future__ import annotations

from autopipe.report.context import ReportContext
from autopipe.report.document import fmt
from autopipe.report.model_sections import without_name


def summary_rows(ctx: ReportContext, check: dict | None, preprocessing: dict | None, decision: dict | None,
                 hand: dict | None) -> list[dict]:
    """[{"question", "answer", "detail", "style"}]: style "good", "warn", "bad" or "missing"."""
    rows = [_check(ctx, check), _preprocessing(ctx, preprocessing)]
    if decision is None:
        rows.append({"question": "Which model won?", "answer": "not decided yet",
                     "detail": f"train the folds, then run `{ctx.command('evaluate')}`", "style": "missing"})
        rows.append({"question": "How good is it?", "answer": "not measured yet",
                     "detail": f"run `{ctx.command('evaluate')}` after training", "style": "missing"})
    else:
        rows.append({"question": "Which model won?", "answer": str(decision["chosen"]),
                     "detail": without_name(decision.get("reason", ""), decision["chosen"]),
                     "style": "warn" if decision.get("provisional") else "good"})
        cases = f" over {decision['cases']} held-out case(s)" if decision.get("cases") else ""
        rows.append({"question": "How good is it?", "answer": f"mean Dice {fmt(decision.get('dice'))}{cases}",
                     "detail": f"{decision.get('definition', '')} (cross-validation: each case scored by the "
                               "fold that never trained on it, in its native space)",
                     "style": "warn" if decision.get("provisional") else "good"})
    if hand is not None:
        interval = hand.get("interval")
        ci = f" [{fmt(interval[0])}, {fmt(interval[1])}]" if isinstance(interval, list) and len(interval) == 2 else ""
        rows.append({"question": "Hand-function accuracy?",
                     "answer": f"{fmt(hand.get('accuracy'))}{ci}",
                     "detail": f"{hand.get('model')} model, {hand.get('n')} held-out subject(s) pooled over folds, "
                               f"{hand.get('level', 0.95):.0%} bootstrap interval; accuracy = (TP + TN) / N at "
                               "probability 0.5",
                     "style": "good"})
    return rows


def _check(ctx: ReportContext, counts: dict | None) -> dict:
    question = "Is the cohort valid?"
    if counts is None:
        return {"question": question, "answer": "not checked here", "detail": f"run `{ctx.command('check')}`",
                "style": "missing"}
    answer = f"{counts['errors']} error(s), {counts['warnings']} warning(s)"
    style = "bad" if counts["errors"] else "warn" if counts["warnings"] else "good"
    detail = ("found by `autopipe check` when this report was written; the Check section lists each with its fix"
              if counts["errors"] or counts["warnings"] else "`autopipe check` found nothing to fix")
    return {"question": question, "answer": answer, "detail": detail, "style": style}


def _preprocessing(ctx: ReportContext, counts: dict | None) -> dict:
    question = "Did preprocessing work?"
    if counts is None:
        return {"question": question, "answer": "not run yet", "detail": f"run `{ctx.command('preprocess')}`",
                "style": "missing"}
    if not sum(counts.values()):
        return {"question": question, "answer": "no case finished", "style": "missing",
                "detail": f"report.json lists no case: run `{ctx.command('preprocess')}`"}
    answer = f"{counts['ok']} ok, {counts['flagged']} flagged, {counts['failed']} failed"
    style = "bad" if counts["failed"] else "warn" if counts["flagged"] else "good"
    detail = ("every case passed its checks" if style == "good" else
              "flagged and failed cases come first in the Preprocessing section, with their causes and QC pictures")
    return {"question": question, "answer": answer, "detail": detail, "style": style}
