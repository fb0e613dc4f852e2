"""JSON outputs are strict: NaN and infinite numbers are written as null, and read back as NaN."""

import json
import math

import numpy as np

from autopipe.files import number, read_json, to_plain, write_json
from autopipe.plan.plans_file import format_json


def _strict(text: str) -> object:
    def refuse(name: str) -> None:
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_nan_and_infinity_are_written_as_null_and_read_back_as_nan(tmp_path):
    value = {"mean": float("nan"), "values": np.array([1.0, np.inf, -np.inf]), "scalar": np.float32("nan"), "n": 3}
    path = write_json(tmp_path / "out.json", value)
    assert _strict(path.read_text()) == {"mean": None, "values": [1.0, None, None], "scalar": None, "n": 3}
    assert _strict(format_json(to_plain(value))) == _strict(path.read_text())
    assert math.isnan(number(read_json(path)["mean"])) and number(read_json(path)["n"]) == 3.0
