"""SIGKILL at the renames of plan, preprocess, train, predict and evaluate, then the same command again.

Each command is first run uninterrupted on a tiny cohort to count its renames (tests/kill_at.py) and to
record its outputs. Then, from the same starting state, it is killed at a rename (with that file still
under its temporary name, or just after it took its place) and run again: the rerun must exit 0 and leave
exactly the uninterrupted outputs (tests/crash.py says how they are compared), with no temporary file,
staging folder or set-aside folder anywhere, and nothing in HOME or TMPDIR (both point into the test's own
folder), not even from the killed run. Training is rerun with --continue, as its message says.

The default suite kills each command once, midway, on a cohort of images and labels; `pytest -m slow` kills it
at every rename, also on a cohort with k-space and hand-function labels (its training at a spread of points).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.crash import differences, isolated_env, leftovers, outputs, restore, run_killed, written_outside
from tests.tiny_cohort import folders, make_tiny_cohort

NAME = "Dataset001_Crash"
OUTPUTS = ("plans", "preprocessed", "results", "predictions")
TRAIN = ["train", "0", "--epochs", "2", "--iterations", "2"]


def _commands(base: Path) -> dict[str, list[str]]:
    return {
        "plan": ["plan", "--throughput-gflops", "50"],
        "replan": ["plan", "--throughput-gflops", "80"],  # replaces the set "plan" wrote
        "preprocess": ["preprocess"],
        "train": TRAIN,
        "predict": ["predict", "-i", str(base / "new"), "-o", str(base / "predictions"), "--probabilities"],
        "evaluate": ["evaluate"],
    }


class Pipeline:
    """The tiny cohort's workspace before each command (a snapshot), the command, its renames and outputs."""

    def __init__(self, root: Path, full: bool) -> None:
        self.root = root
        self.full = full
        self.base = root / "ws"
        self.env = isolated_env(root)
        self.commands = _commands(self.base)
        self.snapshots: dict[str, Path] = {}
        self.renames: dict[str, int] = {}
        self.expected: dict[str, dict] = {}

    def argv(self, stage: str, rerun: bool = False) -> list[str]:
        extra = ["--continue"] if rerun and stage == "train" else []
        return [*self.commands[stage], *extra, *folders(self.base), "-j", "1", "-q"]

    def build(self) -> None:
        make_tiny_cohort(self.base / "raw_data" / NAME, n_cases=5, kspace=self.full, clinical=self.full)
        (self.base / "new").mkdir()
        for image in (self.base / "raw_data" / NAME / "imagesTr").glob("case_000_*"):
            shutil.copy(image, self.base / "new" / image.name.replace("case_000", "new_000"))
        for stage in self.commands:
            snapshot = self.root / f"before_{stage}"
            shutil.copytree(self.base, snapshot, symlinks=True)
            self.snapshots[stage] = snapshot
            done = run_killed(self.argv(stage), 0, "before", self.env, self.root / "count")
            assert done.returncode == 0, f"{stage}: {done.stderr[-3000:]}"
            self.renames[stage] = int((self.root / "count").read_text())
            self.expected[stage] = outputs(self.base, OUTPUTS)
            left = [*leftovers(self.base), *written_outside(self.root)]
            assert not left, f"{stage} leaves {left} when not killed"

    def kill_and_rerun(self, stage: str, point: int, when: str) -> list[str]:
        """What is wrong after killing `stage` at rename `point` (before or after it) and running it again."""
        restore(self.snapshots[stage], self.base)
        killed = run_killed(self.argv(stage), point, when, self.env, self.root / "count")
        if killed.returncode != -9:
            return [f"the command was not killed at rename {point} (exit {killed.returncode}): "
                    f"{killed.stderr[-2000:]}"]
        rerun = run_killed(self.argv(stage, rerun=True), 0, "before", self.env, self.root / "count")
        if rerun.returncode != 0:
            return [f"the rerun failed (exit {rerun.returncode}): {rerun.stderr[-2000:]}"]
        problems = [f"left behind: {p}" for p in [*leftovers(self.base), *written_outside(self.root)]]
        return problems + differences(self.expected[stage], outputs(self.base, OUTPUTS))

    def check_kill_points(self, stage: str, points: list[tuple[int, str]]) -> None:
        """Kill `stage` at each of `points` and rerun it; one assertion listing every point that went wrong."""
        assert self.renames[stage] > 0
        failures = {f"{when} rename {k} of {self.renames[stage]}": problems for k, when in points
                    if (problems := self.kill_and_rerun(stage, k, when))}
        assert not failures, f"{stage} killed, then run again: " + "; ".join(
            f"{point}: {', '.join(problems[:4])}" for point, problems in failures.items())


@pytest.fixture(scope="module")
def lean(tmp_path_factory) -> Pipeline:
    """Images and labels only: the segmentation U-Nets."""
    built = Pipeline(tmp_path_factory.mktemp("crash_lean"), full=False)
    built.build()
    return built


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> Pipeline:
    """With k-space and hand-function labels: the reconstruction approaches and the hand-function models too."""
    built = Pipeline(tmp_path_factory.mktemp("crash_full"), full=True)
    built.build()
    return built


STAGES = ("plan", "replan", "preprocess", "train", "predict", "evaluate")


@pytest.mark.parametrize("stage", STAGES)
def test_a_command_killed_midway_then_rerun_gives_the_uninterrupted_result(lean, stage):
    """At the middle rename, with that file complete under its temporary name."""
    lean.check_kill_points(stage, [((lean.renames[stage] + 1) // 2, "before")])


def _every(pipeline: Pipeline, stage: str) -> list[tuple[int, str]]:
    return [(k, when) for k in range(1, pipeline.renames[stage] + 1) for when in ("before", "after")]


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_a_command_killed_at_every_rename_then_rerun_gives_the_uninterrupted_result(lean, full, stage):
    lean.check_kill_points(stage, _every(lean, stage))
    if stage != "train":  # the full pipeline trains nine models: every point would take hours
        full.check_kill_points(stage, _every(full, stage))
    else:
        n = full.renames[stage]
        spread = sorted({1, n // 4, n // 2, 3 * n // 4, n})
        full.check_kill_points(stage, [(k, when) for k in spread for when in ("before", "after")])
