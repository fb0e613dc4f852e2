"""Cross-validation folds: deterministic, disjoint, stratified, grouped by patient, small cohorts."""

import logging

import pytest

from autopipe.errors import AutopipeError
from autopipe.plan.splits import make_splits

CASES = [f"case_{i:03d}" for i in range(20)]
LABELS = {c: int(i % 4 == 0) for i, c in enumerate(CASES)}  # 5 impaired, 15 good


def _check_partition(folds, cases):
    vals = [c for f in folds for c in f["val"]]
    assert sorted(vals) == sorted(cases)  # every case validated exactly once
    for fold in folds:
        assert not set(fold["train"]) & set(fold["val"])
        assert sorted(fold["train"] + fold["val"]) == sorted(cases)


def test_five_folds_partition_the_cases():
    folds, how = make_splits(CASES)
    assert len(folds) == 5 and "KFold" in how
    _check_partition(folds, CASES)


def test_deterministic_and_order_independent():
    assert make_splits(CASES)[0] == make_splits(list(reversed(CASES)))[0]
    assert make_splits(CASES, LABELS)[0] == make_splits(CASES, LABELS)[0]


def test_stratification_keeps_the_class_ratio():
    folds, how = make_splits(CASES, LABELS)
    assert "stratified" in how
    _check_partition(folds, CASES)
    assert [sum(LABELS[c] for c in f["val"]) for f in folds] == [1] * 5
    unstratified, _ = make_splits(CASES)
    assert folds != unstratified


def test_a_patient_is_never_in_two_folds():
    patients = {c: f"patient_{i // 2}" for i, c in enumerate(CASES)}  # two scans per patient
    for labels in (None, LABELS):
        folds, how = make_splits(CASES, labels, patients)
        assert "patient" in how
        _check_partition(folds, CASES)
        for fold in folds:
            assert not {patients[c] for c in fold["train"]} & {patients[c] for c in fold["val"]}


def test_fewer_cases_than_folds(caplog):
    with caplog.at_level(logging.WARNING):
        folds, how = make_splits(CASES[:3], {c: i % 2 for i, c in enumerate(CASES[:3])})
    assert len(folds) == 3 and "3 folds instead of 5" in how
    assert "3 folds instead of 5" in caplog.text or "making 3 folds" in caplog.text
    _check_partition(folds, CASES[:3])
    assert len(make_splits(CASES[:2])[0]) == 2


def test_one_case_cannot_be_cross_validated():
    with pytest.raises(AutopipeError, match="at least 2"):
        make_splits(CASES[:1])
