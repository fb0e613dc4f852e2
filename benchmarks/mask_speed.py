"""Print how long each undersampling mask takes and the effective acceleration it reaches.

    python benchmarks/mask_speed.py [--acceleration 7.5] [--calibration 24] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

from autopipe.mri.masks import MASK_KINDS, effective_acceleration, make_mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--acceleration", type=float, default=7.5)
    parser.add_argument("--calibration", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{'kind':<11} {'matrix':>9} {'median s':>9} {'effective R':>12}")
    for kind in MASK_KINDS:
        for shape in ((96, 112), (192, 224), (256, 256)):
            calibration = args.calibration if kind in ("poisson", "gaussian") else max(4, shape[1] // 25)
            times, accelerations = [], []
            for seed in range(args.repeats):
                start = time.perf_counter()
                mask = make_mask(kind, shape, args.acceleration, calibration, seed)
                times.append(time.perf_counter() - start)
                accelerations.append(effective_acceleration(mask, shape))
            times.sort()
            print(f"{kind:<11} {shape[0]:>4}x{shape[1]:<4} {times[len(times) // 2]:>9.3f} "
                  f"{min(accelerations):>5.2f}-{max(accelerations):<5.2f}")


if __name__ == "__main__":
    main()
