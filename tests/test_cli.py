"""The command line: help for every command, messages instead of tracebacks, honest exit codes."""

import subprocess
import sys

import pytest

from autopipe.cli import COMMANDS, main


@pytest.mark.parametrize("command", [c[0] for c in COMMANDS])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: autopipe" in capsys.readouterr().out


def test_missing_cohort_is_a_message_not_a_traceback(tmp_path, capsys):
    code = main(["check", "--raw-dir", str(tmp_path / "raw_data")])
    err = capsys.readouterr().err
    assert code == 2
    assert "no cohort found" in err and "autopipe synth" in err
    assert "Traceback" not in err


def test_unexpected_failure_says_it_is_a_bug(monkeypatch, tmp_path, capsys):
    import autopipe.cli as cli

    def explode(args):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(cli, "_run_check", explode)
    parser_commands = [(n, h, a, explode if n == "check" else r) for n, h, a, r in cli.COMMANDS]
    monkeypatch.setattr(cli, "COMMANDS", parser_commands)
    assert main(["check", "--raw-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "bug in autopipe" in err and "--debug" in err and "Traceback" not in err


def test_python_dash_m_is_the_same_command():
    out = subprocess.run([sys.executable, "-m", "autopipe", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("autopipe ")


def test_synth_refuses_to_overwrite_data_that_is_not_synthetic(tmp_path, capsys):
    real = tmp_path / "Dataset005_Real"
    (real / "imagesTr").mkdir(parents=True)
    (real / "imagesTr" / "scan_0000.nii.gz").write_bytes(b"precious")
    assert main(["synth", str(real), "--cases", "1", "--force"]) == 2
    assert "never overwrites" in capsys.readouterr().err
    assert (real / "imagesTr" / "scan_0000.nii.gz").read_bytes() == b"precious"


def test_train_before_plan_or_preprocess_says_what_to_run(tmp_path, capsys):
    from tests.tiny_cohort import make_tiny_cohort

    make_tiny_cohort(tmp_path / "raw_data" / "Dataset002_Tiny", n_cases=3, kspace=False, clinical=False)
    folders = ["--raw-dir", str(tmp_path / "raw_data"), "--plans-dir", str(tmp_path / "plans"),
               "--preprocessed-dir", str(tmp_path / "pre"), "--results-dir", str(tmp_path / "results")]
    assert main(["train", "0", *folders]) == 2
    assert "autopipe plan" in capsys.readouterr().err
    assert main(["plan", *folders, "-j", "1", "-q", "--throughput-gflops", "50"]) == 0
    assert main(["train", "0", *folders]) == 2
    err = capsys.readouterr().err
    assert "not preprocessed" in err and "autopipe preprocess" in err and "Traceback" not in err
    assert main(["train", "7", *folders]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["predict", "-i", str(tmp_path), "-o", str(tmp_path / "out"), *folders]) == 2
    assert "inside the input folder" in capsys.readouterr().err
    assert main(["predict", "-i", str(tmp_path / "new"), "-o", str(tmp_path / "out"), *folders]) == 2
    assert "no trained model" in capsys.readouterr().err
    assert main(["evaluate", *folders]) == 2
    assert "no validation predictions" in capsys.readouterr().err


def test_the_demo_keeps_its_caches_and_scratch_files_in_its_own_folder(tmp_path):
    """Not in ./results of wherever it was started (it used to leave ./results/.cache/matplotlib behind)."""
    from autopipe.arguments import workspace
    from autopipe.cli import build_parser
    from autopipe.paths import Workspace

    args = build_parser().parse_args(["demo", "--workdir", str(tmp_path / "demo")])
    assert workspace(args) == Workspace.under(tmp_path / "demo")
    assert workspace(args).results == (tmp_path / "demo" / "results").resolve()
