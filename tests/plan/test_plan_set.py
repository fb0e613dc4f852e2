"""plans/DATASET/ is replaced as one set: killed at any rename, the old set or the new one is there, never a mix."""

from pathlib import Path

import pytest

from autopipe.plan import plan_set
from autopipe.plan.plan_set import recover, write_set

OLD = {"fingerprint.json": "old f", "plans.json": "old p", "splits_final.json": "old s"}
NEW = {"fingerprint.json": "new f", "plans.json": "new p", "splits_final.json": "new s"}


def _contents(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def test_a_set_replaces_the_old_one_and_keeps_the_backup_of_edits(tmp_path):
    folder = tmp_path / "Dataset001_X"
    write_set(folder, OLD)
    (folder / "plans.previous.json").write_text("edited")
    (folder / "stale.json").write_text("from an older autopipe")
    write_set(folder, NEW)
    assert _contents(folder) == {**NEW, "plans.previous.json": "edited"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset001_X"]


@pytest.mark.parametrize("killed_at", [1, 2])  # moving the old set aside, renaming the new one into place
def test_killed_between_renames_leaves_one_whole_set(tmp_path, monkeypatch, killed_at):
    folder = tmp_path / "Dataset001_X"
    write_set(folder, OLD)
    calls = []
    rename = Path.rename

    def dying_rename(self, target):
        calls.append(self)
        if len(calls) == killed_at:
            raise KeyboardInterrupt("killed")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", dying_rename)
    with pytest.raises(KeyboardInterrupt):
        write_set(folder, NEW)
    monkeypatch.setattr(Path, "rename", rename)
    recover(folder)
    assert _contents(folder) == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset001_X"]
    write_set(folder, NEW)
    assert _contents(folder) == NEW


def test_recover_removes_temporary_files_a_kill_left(tmp_path):
    folder = tmp_path / "Dataset001_X"
    write_set(folder, OLD)
    (folder / ".tmp_abc.json").write_text("half")
    plan_set.recover(folder)
    assert _contents(folder) == OLD
