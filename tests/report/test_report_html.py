"""`autopipe report`: every section gathered or said missing with its command, self-contained, escaped."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path

import pytest

from autopipe.cli import main
from autopipe.report.render import build_report, render_html, write_report
from tests.report.fake_workspace import (
    DATASET,
    FAILED_CASE,
    FLAGGED_CASE,
    IMPLAUSIBLE_CASE,
    ODD_CASE,
    PLAN_REASON,
    make_workspace,
    png_bytes,
)

SECTION_IDS = ["summary", "cohort", "check", "preprocessing", "plan", "training", "crossval", "postprocessing",
               "reconstruction", "hand-function", "provenance"]


class Structure(HTMLParser):
    """Section ids, headings, image sources and every URL-like attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.section_ids: list[str] = []
        self.headings: dict[str, list[str]] = {"h1": [], "h2": []}
        self.images: list[str] = []
        self.references: list[str] = []
        self._heading: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "section":
            self.section_ids.append(values.get("id") or "")
        if tag in self.headings:
            self._heading = tag
            self.headings[tag].append("")
        if tag == "img":
            self.images.append(values.get("src") or "")
        self.references += [v or "" for k, v in attrs if k in ("src", "href", "srcset", "action", "data")]

    def handle_endtag(self, tag: str) -> None:
        if tag == self._heading:
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._heading:
            self.headings[self._heading][-1] += data


def parse(html: str) -> Structure:
    parser = Structure()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def complete(tmp_path_factory) -> tuple[Path, object, str]:
    root, ws = make_workspace(tmp_path_factory.mktemp("complete"))
    return root, ws, render_html(build_report(root, ws, run_check=False))


@pytest.fixture(scope="module")
def empty(tmp_path_factory) -> str:
    root, ws = make_workspace(tmp_path_factory.mktemp("empty"), complete=False)
    return render_html(build_report(root, ws, run_check=False))


def test_every_section_is_there_in_order_with_one_title(complete):
    page = parse(complete[2])
    assert page.section_ids == SECTION_IDS
    assert page.headings["h1"] == [f"autopipe report: {DATASET}"]
    assert len(page.headings["h2"]) == len(SECTION_IDS)


def test_summary_answers_preprocessing_winner_quality_and_hand_function(complete):
    html = complete[2]
    summary = html[html.index('id="summary"'):html.index('id="cohort"')]
    assert "2 ok, 1 flagged, 2 failed" in summary  # case_000 and the odd one ok; one failed check, one failure
    assert "3d_fullres" in summary and "mean Dice 0.751 over 5 held-out case(s)" in summary
    assert "2|P∩R|" in summary  # Dice comes with its definition
    assert "0.800 [0.400, 1.000]" in summary  # hand-function accuracy with its interval


def test_failed_and_flagged_cases_come_first_with_their_causes(complete):
    html = complete[2]
    section = html[html.index('id="preprocessing"'):html.index('id="plan"')]
    order = [section.index(name) for name in (FAILED_CASE, IMPLAUSIBLE_CASE, FLAGGED_CASE, "case_000")]
    assert order == sorted(order)
    assert "truncated file" in section and "registration Dice 0.41" in section and "30% below" in section
    assert section.count("<img") == 3  # the two cases needing a look, then the montage
    pictures = [section.index(f"<figcaption>{case}: ") for case in (IMPLAUSIBLE_CASE, FLAGGED_CASE)]
    assert pictures == sorted(pictures) and pictures[-1] < section.index("QC montage")


def test_plan_shows_every_value_with_its_reason_escaped(complete):
    html = complete[2]
    section = html[html.index('id="plan"'):html.index('id="training"')]
    for text in ("configuration 3d_fullres", "configuration 2d", "[48, 48, 48]",
                 "CPU time rule: shrunk to fit the budget", "[[3, 3, 3], [3, 3, 3]]", "12345",
                 "fixed: the same registration every run", "[96, 96]"):
        assert text in section
    assert PLAN_REASON.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in section
    assert PLAN_REASON not in section


def test_results_sections_show_their_numbers(complete):
    html = complete[2]
    assert "0.710 ± 0.050" in html  # pooled cross-validation Dice
    assert "Wilcoxon signed-rank, two-sided" in html
    assert "10 mm³ chosen" in html  # postprocessing
    assert "zero_filled" in html and "mtlrs" in html  # reconstruction comparison
    assert "60% of the positive weight" in html  # the coefficient map's weight in the generating region
    assert "0123456789abcdef" in html  # preprocessing digest in the provenance
    assert "training 3d_fullres fold 0 on cpu" in html  # the run as its log records it


def test_case_names_and_texts_are_escaped(complete):
    html = complete[2]
    assert ODD_CASE not in html
    assert "case&lt;b&gt;&amp;&#34;odd&#34;&lt;/b&gt;" in html


def test_self_contained_images_are_data_uris_and_nothing_points_outside(complete):
    html = complete[2]
    page = parse(html)
    assert len(page.images) == 8  # QC 3, training 2, comparison 1, hand function 2
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG")
    assert all(ref.startswith(("data:", "#")) for ref in page.references)
    for scheme in ("http://", "https://", "file://"):
        assert scheme not in html


def test_missing_sections_say_which_command_makes_them(empty):
    page = parse(empty)
    assert page.section_ids == SECTION_IDS
    assert not page.images
    for command in (f"autopipe plan {DATASET}", f"autopipe preprocess {DATASET}", f"autopipe train 0 {DATASET}",
                    f"autopipe evaluate {DATASET}"):
        assert f"<code>{command}</code>" in empty
    for section in ("plan", "preprocessing", "training", "crossval", "postprocessing", "reconstruction",
                    "hand-function"):
        part = empty[empty.index(f'id="{section}"'):]
        part = part[:part.index("</section>")]
        assert "Not there yet" in part, section
    summary = empty[empty.index('id="summary"'):empty.index('id="cohort"')]
    assert "not run yet" in summary and "not decided yet" in summary


def test_check_runs_in_process_and_lists_the_cohorts_problems(tmp_path):
    root, ws = make_workspace(tmp_path, complete=False)
    html = render_html(build_report(root, ws))
    assert "0 error(s), 1 warning(s)" in html and '<li class="warn">WARNING case_003' in html  # it has no lesion
    summary = html[html.index('id="summary"'):html.index('id="cohort"')]
    assert "Is the cohort valid?" in summary and "0 error(s), 1 warning(s)" in summary
    (root / "labelsTr" / "case_003.nii.gz").unlink()
    html = render_html(build_report(root, ws))
    section = html[html.index('id="check"'):html.index('id="preprocessing"')]
    assert "0 error(s)" not in section and "case_003" in section and 'class="bad"' in section


def test_a_damaged_png_is_left_out_not_embedded(tmp_path):
    root, ws = make_workspace(tmp_path)
    montage = ws.preprocessed / DATASET / "template_2mm" / "qc" / "montage.png"
    montage.write_bytes(b"not a png")
    html = render_html(build_report(root, ws, run_check=False))
    assert len(parse(html).images) == 7
    assert base64.b64encode(png_bytes(seed=1)).decode() not in html


def test_cli_writes_the_default_path_atomically_and_prints_it(tmp_path, capsys):
    root, ws = make_workspace(tmp_path)
    folders = ["--raw-dir", str(ws.raw), "--plans-dir", str(ws.plans), "--preprocessed-dir", str(ws.preprocessed),
               "--results-dir", str(ws.results)]
    assert main(["report", *folders, "--no-check", "-q"]) == 0
    path = ws.results / DATASET / "report.html"
    assert capsys.readouterr().out.strip() == str(path)
    assert parse(path.read_text(encoding="utf-8")).section_ids == SECTION_IDS
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp_")]
    out = tmp_path / "elsewhere" / "r.html"
    assert main(["report", DATASET, *folders, "--no-check", "-q", "-o", str(out)]) == 0
    assert out.is_file()


def test_cli_refuses_a_folder_as_output_and_an_unknown_cohort(tmp_path, capsys):
    root, ws = make_workspace(tmp_path, complete=False)
    folders = ["--raw-dir", str(ws.raw), "--results-dir", str(ws.results), "--plans-dir", str(ws.plans)]
    assert main(["report", *folders, "--no-check", "-o", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["report", "Dataset999_None", *folders]) == 2
    assert "no cohort" in capsys.readouterr().err


def test_write_report_returns_the_file(tmp_path):
    root, ws = make_workspace(tmp_path, complete=False)
    path = write_report(root, ws, tmp_path / "r.html", run_check=False)
    assert path == tmp_path / "r.html" and path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("content", ["[1, 2]", '{"cases": "x", "models": [3], "methods": {"a": 1}, "pooled": 2}',
                                     '{"chosen": null, "candidates": {"x": 1}, "paired": 3}', "not json"])
def test_files_of_an_unexpected_shape_never_cost_the_report(tmp_path, content):
    root, ws = make_workspace(tmp_path)
    for folder in (ws.plans, ws.preprocessed, ws.results):
        for path in folder.rglob("*.json"):
            path.write_text(content, encoding="utf-8")
    html = render_html(build_report(root, ws, run_check=False))
    assert parse(html).section_ids == SECTION_IDS


def test_without_a_decision_the_best_pooled_dice_so_far_is_provisional(tmp_path):
    root, ws = make_workspace(tmp_path)
    (ws.results / DATASET / "best_configuration.json").unlink()
    html = render_html(build_report(root, ws, run_check=False))
    summary = html[html.index('id="summary"'):html.index('id="cohort"')]
    assert "provisional" in summary and 'data-status="warn"' in summary
    section = html[html.index('id="crossval"'):html.index('id="postprocessing"')]
    assert f"<code>autopipe evaluate {DATASET}</code>" in section and "0.710 ± 0.050" in section
