"""`autopipe demo` ends by writing the report and saying where it is (the stages themselves stubbed out)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from autopipe import demo


def test_the_demo_ends_with_the_report(tmp_path, monkeypatch, caplog):
    from tests.tiny_cohort import make_tiny_cohort

    def prepare(cohort, ws, *args):
        make_tiny_cohort(cohort, n_cases=5, kspace=False)
        return ws.preprocessed / demo.DEMO_DATASET / "template_2mm"

    plans = SimpleNamespace(configurations={"3d_fullres": None}, reconstruction=SimpleNamespace(acceleration=4.0),
                            multitask=SimpleNamespace(approaches=[]), hand_function=None)
    monkeypatch.setattr(demo, "prepare_cohort", prepare)
    monkeypatch.setattr(demo, "load_plans", lambda path: plans)
    for stage in ("train_demo_fold", "predict_new_cases"):
        monkeypatch.setattr(demo, stage, lambda *args, **kwargs: None)
    monkeypatch.setattr(demo, "evaluate_crossvalidation", lambda *args: [])
    monkeypatch.setattr(demo, "compare_configurations", lambda summaries: "")
    monkeypatch.setattr(demo, "models_for", lambda approaches: [])
    monkeypatch.setattr(logging.getLogger("autopipe"), "propagate", True)  # `main` in an earlier test turns it off
    with caplog.at_level(logging.INFO, logger="autopipe"):
        assert demo.run_demo(tmp_path / "demo", cases=5) == 0
    report = tmp_path / "demo" / "results" / demo.DEMO_DATASET / "report.html"
    assert report.is_file() and str(report) in caplog.text
