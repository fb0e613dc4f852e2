"""One small synthetic cohort (3 training + 1 test case at 3 mm, FLAIR + T1), made once for every synth test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import SimpleITK as sitk

from autopipe.synth.cohort import SynthOptions, synthesize_cohort

OPTIONS = SynthOptions(num_cases=3, num_test_cases=1, seed=0, spacing=(3.0, 3.0, 3.0), channels=("FLAIR", "T1"))


@pytest.fixture(scope="session", autouse=True)
def one_itk_thread():
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


@pytest.fixture(scope="session")
def cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "Dataset001_SynthPVL"
    synthesize_cohort(out, OPTIONS, workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def generator(cohort) -> dict:
    return json.loads((cohort / "groundtruth" / "generator.json").read_text())
