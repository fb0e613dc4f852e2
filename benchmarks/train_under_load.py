"""Training speed under CPU contention: seconds per iteration solo and beside a busy process, per OpenMP wait policy.

    python benchmarks/train_under_load.py [--iterations 15] [--threads 2]

A 3D U-Net (the demo's size: 48^3 patch, batch 2, features 8-64, 4 stages) trains --iterations steps in a
fresh process, (1) alone, (2) beside one busy pure-Python process, and (3) beside a second process doing the
same training (as when two autopipe commands share a machine), under each OpenMP wait policy: unset (GNU
OpenMP spins a while, then sleeps), ACTIVE (spins), a short spin count, and PASSIVE (threads sleep while they
wait). With one of two cores taken, about 2x slower than solo is the physical limit.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

WORKER = """
import os, sys, time
import torch
torch.set_num_threads(int(sys.argv[1]))
from autopipe.models.unet import PlainConvUNet
net = PlainConvUNet(1, 2, (8, 16, 32, 64), [[3, 3, 3]] * 4, [[1, 1, 1]] + [[2, 2, 2]] * 3, deep_supervision=False)
opt = torch.optim.Adam(net.parameters(), 1e-3)
x, y = torch.randn(2, 1, 48, 48, 48), torch.randint(0, 2, (2, 48, 48, 48))
def step():
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    opt.step()
step()
n = int(sys.argv[2])
start = time.perf_counter()
for _ in range(n):
    step()
print((time.perf_counter() - start) / n)
"""
BUSY = "while True: pass"
POLICIES = {  # torch's CPU wheels use GNU OpenMP: unset = spin 300,000 rounds, then sleep
    "unset (default)": {},
    "ACTIVE": {"OMP_WAIT_POLICY": "ACTIVE"},
    "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
    "PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for policy in POLICIES:
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
        env.update(POLICIES[policy], OMP_NUM_THREADS=str(args.threads))
        solo = _timed(env, args)
        beside_busy = _beside([sys.executable, "-c", BUSY], env, args)
        beside_training = _beside([sys.executable, "-c", WORKER, str(args.threads), "100000"], env, args)
        rows.append((policy, solo, beside_busy, beside_training))
    print(f"\n3D U-Net 48^3, batch 2, {args.threads} threads: seconds per iteration (x solo)")
    best = min(solo for _, solo, _, _ in rows)
    print(f"{'wait policy':<22}{'solo':>8}{'beside a busy process':>26}{'beside a 2nd training':>26}   "
          "(x the fastest solo)")
    for policy, solo, busy, training in rows:
        print(f"{policy:<22}{solo:>8.3f}{busy:>18.3f} ({busy / best:4.1f}x){training:>18.3f} ({training / best:4.1f}x)")


def _timed(env: dict, args: argparse.Namespace) -> float:
    out = subprocess.run([sys.executable, "-c", WORKER, str(args.threads), str(args.iterations)], env=env,
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _beside(load: list[str], env: dict, args: argparse.Namespace) -> float:
    other = subprocess.Popen(load, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)  # let it start (imports) and occupy its core
        return _timed(env, args)
    finally:
        other.kill()
        other.wait()


if __name__ == "__main__":
    main()
