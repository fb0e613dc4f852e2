"""Device, memory target and throughput: given values win; the benchmark measures something plausible, once per
machine."""

import json

import pytest

from autopipe.errors import AutopipeError
from autopipe.plan import hardware
from autopipe.plan.hardware import CALIBRATION_FILE, NNUNET_MEMORY_GB, benchmark_gflops, detect_device, resolve_hardware


def test_given_values_are_used_and_recorded():
    hw = resolve_hardware("cpu", memory_gb=6, throughput_gflops=80, threads=2)
    assert (hw.device, hw.memory_gb, hw.throughput_gflops, hw.cpu_threads) == ("cpu", 3.0, 80.0, 2)  # half the RAM
    assert hw.reasons["throughput_gflops"] == "given"


@pytest.mark.parametrize(("given", "target"), [(80, NNUNET_MEMORY_GB), (6, 6.0)])
def test_gpu_memory_target_is_nnunets_8gb_at_most_the_card(given, target):
    assert resolve_hardware("cuda", memory_gb=given, throughput_gflops=1e4).memory_gb == target


def test_absent_gpu_gets_nominal_throughput():
    hw = resolve_hardware("cuda", memory_gb=8)  # this machine may have no GPU: then nothing is measured
    assert hw.throughput_gflops > 0 and hw.reasons["throughput_gflops"]


def test_invalid_device_and_memory():
    with pytest.raises(AutopipeError, match="valid|use one of"):
        resolve_hardware("tpu")
    with pytest.raises(AutopipeError, match="positive"):
        resolve_hardware("cpu", memory_gb=0, throughput_gflops=1)


def test_cpu_benchmark_is_quick_and_plausible():
    rate = benchmark_gflops("cpu", threads=1, seconds=0.2)
    assert 1 < rate < 10_000


def test_the_device_is_calibrated_once_by_its_best_round_and_read_back(tmp_path, monkeypatch):
    device, store = detect_device(), tmp_path / "plans" / CALIBRATION_FILE
    rounds = iter([100.0, 140.0, 120.0, 90.0, 130.0])  # a busy moment spoils a round, not the calibration
    monkeypatch.setattr(hardware, "benchmark_gflops", lambda *_: next(rounds))
    monkeypatch.setattr(hardware, "CALIBRATION_PAUSE_SECONDS", 0.0)
    first = resolve_hardware(memory_gb=16, threads=2, calibration=store)
    assert first.throughput_gflops == round(140.0 * hardware.TRAINING_EFFICIENCY, 1)
    assert "best of 5 rounds, calibrated on" in first.reasons["throughput_gflops"]
    stored = json.loads(store.read_text())
    assert [entry["rounds"] for entry in stored.values()] == [[100.0, 140.0, 120.0, 90.0, 130.0]]

    def must_not_measure(*_):
        raise AssertionError("a calibrated machine is not measured again")

    monkeypatch.setattr(hardware, "benchmark_gflops", must_not_measure)
    assert resolve_hardware(memory_gb=16, threads=2, calibration=store) == first
    with pytest.raises(AssertionError, match="not measured again"):  # another thread count is another machine
        resolve_hardware(memory_gb=16, threads=1, calibration=store)
    monkeypatch.setattr(hardware, "benchmark_gflops", lambda *_: 50.0)
    again = resolve_hardware(memory_gb=16, threads=2, calibration=store, recalibrate=True)
    assert again.throughput_gflops == round(50.0 * hardware.TRAINING_EFFICIENCY, 1)
    assert device in next(iter(json.loads(store.read_text())))


def test_a_damaged_calibration_is_measured_again(tmp_path, monkeypatch):
    store = tmp_path / CALIBRATION_FILE
    store.write_text("{not json")
    monkeypatch.setattr(hardware, "benchmark_gflops", lambda *_: 70.0)
    monkeypatch.setattr(hardware, "CALIBRATION_PAUSE_SECONDS", 0.0)
    assert resolve_hardware(memory_gb=16, threads=2, calibration=store).throughput_gflops == round(
        70.0 * hardware.TRAINING_EFFICIENCY, 1)
    assert list(json.loads(store.read_text()).values())[0]["gflops"] == 70.0
