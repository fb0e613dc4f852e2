"""Fixtures for the check tests: valid tiny cohorts, copied per test so each can break one thing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.tiny_cohort import make_tiny_cohort

NAME = "Dataset001_Tiny"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_cohort(tmp_path_factory.mktemp("one_channel") / NAME)


@pytest.fixture(scope="module")
def template_two_channels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_cohort(tmp_path_factory.mktemp("two_channels") / NAME, channels=("FLAIR", "T1"),
                            clinical=False, kspace=False)


@pytest.fixture
def cohort(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / NAME))


@pytest.fixture
def two_channels(template_two_channels: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template_two_channels, tmp_path / NAME))
