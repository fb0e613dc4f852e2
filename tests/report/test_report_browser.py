"""The report in a real browser (headless Chromium): it renders, every picture decodes, no script error.

Skipped when no Chromium is installed (`apt-get install chromium`; .ci/run installs it where apt works).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from autopipe.report.render import write_report
from tests.report.fake_workspace import make_workspace
from tests.report.test_report_html import SECTION_IDS, parse

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((found for name in BROWSERS if (found := shutil.which(name))), None)
TIMEOUT_S = 60  # a hung browser fails the test instead of hanging the suite

pytestmark = pytest.mark.skipif(BROWSER is None, reason=f"no Chromium found (looked for {', '.join(BROWSERS)} on "
                                                        "PATH); install it with `apt-get install chromium`")


def chromium(*arguments: str, profile: Path) -> subprocess.CompletedProcess:
    """Run headless Chromium once, in its own profile folder, logging the page's console to stderr."""
    command = [BROWSER, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
               "--disable-extensions", "--disable-background-networking", f"--user-data-dir={profile}",
               "--enable-logging=stderr", "--v=0", *arguments]
    env = {**os.environ, "HOME": str(profile)}
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, env=env, check=False)


def console_errors(stderr: str) -> list[str]:
    """The page's console messages and uncaught exceptions among Chromium's log lines. Chromium logs every console
    message as INFO:CONSOLE whatever its level, and the report writes none: any such line is a problem."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("browser")
    root, ws = make_workspace(base)
    return write_report(root, ws, base / "report.html", run_check=False)


def test_the_report_renders_to_a_screenshot_that_is_not_blank(report, tmp_path):
    from PIL import Image

    screenshot = tmp_path / "report.png"
    result = chromium(f"--screenshot={screenshot}", "--window-size=1280,2000", report.as_uri(), profile=tmp_path / "p")
    assert result.returncode == 0, result.stderr[-2000:]
    assert screenshot.is_file()
    pixels = np.asarray(Image.open(screenshot).convert("L"), dtype=float)
    assert pixels.shape == (2000, 1280)
    assert pixels.std() > 5  # text, tables and pictures, not an empty page
    assert not console_errors(result.stderr), console_errors(result.stderr)


def test_every_picture_loads_and_the_structure_is_complete(report, tmp_path):
    result = chromium("--dump-dom", "--virtual-time-budget=5000", "--window-size=1280,2000", report.as_uri(),
                      profile=tmp_path / "p")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert 'data-images="8"' in body, body  # the page's own load script ran and counted every <img>
    assert 'data-broken-images="0"' in body, body  # and each decoded (naturalWidth > 0)
    page = parse(dom)
    assert page.section_ids == SECTION_IDS
    assert len(page.headings["h1"]) == 1 and len(page.headings["h2"]) == len(SECTION_IDS)
    assert not console_errors(result.stderr), console_errors(result.stderr)


def test_it_prints_to_pdf_with_a_page_per_section(report, tmp_path):
    pdf = tmp_path / "report.pdf"
    result = chromium(f"--print-to-pdf={pdf}", "--no-pdf-header-footer", report.as_uri(), profile=tmp_path / "p")
    assert result.returncode == 0, result.stderr[-2000:]
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf.read_bytes()))
    assert pages >= len(SECTION_IDS)  # the summary shares the first page with the title; every other section breaks


def test_a_script_error_would_be_seen(tmp_path):
    """The console check itself: a page that throws is caught (else the two tests above could pass blindly)."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><script>undefinedFunction();</script></body></html>",
                    encoding="utf-8")
    result = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "p")
    assert any("Uncaught ReferenceError" in line for line in console_errors(result.stderr)), result.stderr[-2000:]
