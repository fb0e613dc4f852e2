"""Peak memory of one fingerprint task, on real heads that ship in packages (the bank) at their source resolution.

    python benchmarks/fingerprint_memory.py --workdir DIR [VARIANT ...]

Each variant is written as a one-case cohort and fingerprinted in a fresh process (one thread), whose peak
resident memory is the task's: what a worker needs per case, against the plan's GB_PER_CASE declared to Dask
and used to bound `-j`. The peak includes writing the variant in the same process, so it is an upper bound.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

DEFAULT = ["robex_noisy_t1_native", "pydeface_zero_t1_native", "mni152_stripped_zero_native", "robex_zero_1mm"]


def measure(name: str, workdir: Path) -> None:
    from autopipe.runtime import set_threads

    set_threads(1)
    from autopipe.bank.cohort import write_cohort
    from autopipe.bank.variants import catalogue
    from autopipe.cohort.dataset import load_dataset, training_case_ids
    from autopipe.cohort.image_io import read_volume
    from autopipe.plan.fingerprint import fingerprint_dataset

    spec = next(s for s in catalogue("full") if s.name == name)
    root = write_cohort([spec], workdir / name / "Dataset001_Real")
    dataset = load_dataset(root)
    shape = read_volume(next((root / "imagesTr").iterdir())).data.shape
    start = time.monotonic()
    fingerprint_dataset(dataset, training_case_ids(dataset), workers=1, progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"{name:32s} {'x'.join(map(str, shape)):>12s}  {time.monotonic() - start:5.1f} s  peak {peak:.2f} GB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("variants", nargs="*", default=DEFAULT)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process: measure this variant
    args = parser.parse_args()
    if args.one:
        measure(args.one, args.workdir)
        return
    from autopipe.plan.fingerprint import GB_PER_CASE

    print(f"fingerprint of one case per fresh process, 1 thread; declared per case: {GB_PER_CASE} GB")
    for name in args.variants:
        subprocess.run([sys.executable, __file__, "--workdir", str(args.workdir), "--one", name], check=True)


if __name__ == "__main__":
    main()
