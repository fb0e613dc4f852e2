"""Device, memory target and throughput: given values win; the benchmark measures something plausible."""

import pytest

from autopipe.errors import AutopipeError
from autopipe.plan.hardware import NNUNET_MEMORY_GB, benchmark_gflops, resolve_hardware


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
