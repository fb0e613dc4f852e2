"""A DATASET argument may be a folder name, number, name or path; mistakes list the choices."""

import pytest

from autopipe.errors import AutopipeError
from autopipe.paths import Workspace, resolve_dataset


@pytest.fixture
def raw(tmp_path):
    for name in ("Dataset001_SynthPVL", "Dataset012_MS"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "dataset.json").write_text("{}")
    (tmp_path / "not_a_cohort").mkdir()
    return tmp_path


@pytest.mark.parametrize("arg", ["Dataset001_SynthPVL", "1", "001", "SynthPVL"])
def test_every_way_of_naming_a_cohort(raw, arg):
    assert resolve_dataset(arg, raw).name == "Dataset001_SynthPVL"


def test_a_path_names_a_cohort_anywhere(raw):
    assert resolve_dataset(str(raw / "Dataset012_MS"), raw / "elsewhere") == (raw / "Dataset012_MS").resolve()


def test_optional_with_one_cohort(tmp_path):
    (tmp_path / "Dataset003_X").mkdir()
    (tmp_path / "Dataset003_X" / "dataset.json").write_text("{}")
    assert resolve_dataset(None, tmp_path).name == "Dataset003_X"


def test_ambiguous_or_unknown_lists_the_choices(raw):
    with pytest.raises(AutopipeError, match="Dataset001_SynthPVL, Dataset012_MS"):
        resolve_dataset(None, raw)
    with pytest.raises(AutopipeError, match="no cohort '7'.*Dataset012_MS"):
        resolve_dataset("7", raw)
    with pytest.raises(AutopipeError, match="no dataset.json"):
        resolve_dataset(str(raw / "not_a_cohort"), raw)


def test_empty_raw_folder_says_how_to_start(tmp_path):
    with pytest.raises(AutopipeError, match="autopipe synth"):
        resolve_dataset(None, tmp_path / "raw_data")


def test_workspace_defaults_need_no_environment(tmp_path, monkeypatch):
    for var in ("AUTOPIPE_RAW", "AUTOPIPE_PLANS", "AUTOPIPE_PREPROCESSED", "AUTOPIPE_RESULTS"):
        monkeypatch.delenv(var, raising=False)
    ws = Workspace.from_environment(tmp_path)
    assert ws.raw == tmp_path / "raw_data" and ws.results == tmp_path / "results"
    monkeypatch.setenv("AUTOPIPE_PLANS", str(tmp_path / "p"))
    assert Workspace.from_environment(tmp_path).plans == tmp_path / "p"
    assert Workspace.from_environment(tmp_path, plans=tmp_path / "q").plans == tmp_path / "q"
