"""Checkpoints and folds read from disk: damaged or foreign files give a message, not a traceback."""

import json

import pytest
import torch

from autopipe.errors import AutopipeError
from autopipe.models.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from autopipe.plan.splits import load_splits
from autopipe.preprocess.folds import parse_fold
from autopipe.train.schedule import poly_lr

STATE = {"kind": "segmentation", "epoch": 1, "network_kwargs": {}, "patch_size": [8, 8, 8],
         "transpose_forward": [0, 1, 2], "network": {"w": torch.ones(2)}}


def test_a_checkpoint_round_trips_and_damage_is_reported(tmp_path):
    path = save_checkpoint(checkpoint_path(tmp_path, "latest"), STATE)
    assert torch.equal(load_checkpoint(path)["network"]["w"], torch.ones(2))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(AutopipeError, match="cannot be read"):
        load_checkpoint(path)
    with pytest.raises(AutopipeError, match="not found"):
        load_checkpoint(tmp_path / "checkpoint_final.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(AutopipeError, match="not an autopipe checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(ValueError):
        checkpoint_path(tmp_path, "newest")


def test_poly_lr_by_hand():
    assert poly_lr(0.01, 0, 10) == 0.01
    assert poly_lr(0.01, 5, 10) == pytest.approx(0.01 * 0.5**0.9)
    with pytest.raises(ValueError):
        poly_lr(0.01, 10, 10)


def test_folds_are_validated(tmp_path):
    path = tmp_path / "splits_final.json"
    with pytest.raises(AutopipeError, match="autopipe plan"):
        load_splits(path)
    path.write_text(json.dumps([{"train": ["a"], "val": ["a"]}]))
    with pytest.raises(AutopipeError, match="both in train and val"):
        load_splits(path)
    path.write_text(json.dumps([{"train": ["a"]}]))
    with pytest.raises(AutopipeError, match="fold 0"):
        load_splits(path)
    path.write_text(json.dumps([{"train": ["a"], "val": ["b"]}]))
    assert load_splits(path)[0]["val"] == ["b"]
    assert parse_fold("03") == "3" and parse_fold("all") == "all"
    with pytest.raises(AutopipeError, match="not a number"):
        parse_fold("first")
