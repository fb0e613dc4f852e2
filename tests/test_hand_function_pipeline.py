"""Hand function through the commands: train every fold (the predictors wait for the last one), predict, evaluate."""


import pytest

from autopipe.cli import main
from tests.tiny_cohort import folders, tree_digest

DATASET = "Dataset008_SynthHand"
LABELS = ["good", "impaired", "good", "impaired", "good", "good", "impaired", "good"]  # fixed: 3 of 8 impaired

# 5 minutes: every fold trained, and the second test reads what the first trained. The default suite keeps the
# hand-function units (tests/train/test_hand_fold.py, the one-class message included) and the end-to-end run.
pytestmark = pytest.mark.slow




@pytest.fixture(scope="module")
def base(tmp_path_factory):
    base = tmp_path_factory.mktemp("hand")
    cohort = base / "raw_data" / DATASET
    assert main(["synth", str(cohort), "--cases", "8", "--test-cases", "1", "--spacing", "3", "--seed", "2",
                 "--tasks", "segmentation,hand_function", "-j", "1", "-q"]) == 0
    rows = (cohort / "clinical.csv").read_text().splitlines()
    header = rows[0].split(",")
    column = header.index("hand_function")
    fixed = [rows[0]] + [",".join(v if i != column else LABELS[n] for i, v in enumerate(row.split(",")))
                         for n, row in enumerate(rows[1:])]
    (cohort / "clinical.csv").write_text("\n".join(fixed) + "\n")
    assert main(["plan", *folders(base), "-j", "1", "-q", "--throughput-gflops", "50"]) == 0
    assert main(["preprocess", *folders(base), "-j", "1", "-q", "--no-qc"]) == 0
    return base


def test_train_every_fold_then_predict_and_evaluate_hand_function(base, tmp_path, capsys):
    raw = tree_digest(base / "raw_data")
    results = base / "results" / DATASET
    for fold in range(5):
        assert main(["train", str(fold), *folders(base), "-c", "3d_fullres,hand_function,joint_3d_fullres",
                     "--epochs", "1", "--iterations", "2", "--no-mirror", "--threads", "1"]) == 0
        out = capsys.readouterr().out
        if fold < 4:
            assert not (results / "hand_function" / "fold_0" / "predictor.json").exists()
        assert "joint_3d_fullres fold" in out
    for fold in range(5):
        assert (results / "hand_function" / f"fold_{fold}" / "predictor.json").is_file()
        assert (results / "joint_3d_fullres" / f"fold_{fold}" / "hand_function.json").is_file()
    assert main(["evaluate", *folders(base), "-q"]) == 0
    out = capsys.readouterr().out
    assert "hand function (impaired vs good)" in out and "joint_3d_fullres" in out and "baseline" in out
    assert (results / "hand_function" / "calibration.png").is_file()
    assert (results / "hand_function" / "coefficients_mean.png").is_file()
    images = base / "raw_data" / DATASET / "imagesTs"
    predictions = tmp_path / "predictions"
    assert main(["predict", "-i", str(images), "-o", str(predictions), *folders(base), "-c", "3d_fullres",
                 "--no-mirror", "-j", "1", "-q"]) == 0
    table = (predictions / "hand_function.csv").read_text().splitlines()
    assert table[0].startswith("case_id,probability_impaired,prediction") and len(table) == 2
    assert tree_digest(base / "raw_data") == raw


def test_a_fold_with_one_class_in_training_says_what_to_do(base, capsys):
    clinical = base / "raw_data" / DATASET / "clinical.csv"
    saved = clinical.read_text()
    try:
        clinical.write_text(saved.replace("impaired", "good"))
        assert main(["train", "0", *folders(base), "-c", "hand_function", "--force"]) != 0
        err = capsys.readouterr().err
        assert "only good subjects" in err and "clinical.csv" in err and "Traceback" not in err
    finally:
        clinical.write_text(saved)
