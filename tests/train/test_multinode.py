"""Training on two torchrun "nodes" on loopback (--nnodes 2, two ranks each, one shared results folder): one
node is killed mid-fold, and `--continue` on both finishes the fold from its last finished epoch."""

import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autopipe.cli import main
from autopipe.synth.cohort import SynthOptions, synthesize_cohort
from tests.tiny_cohort import folders

DATASET = "Dataset008_Nodes"
EPOCHS = 12  # about 5 s each here: the kill after epoch 2 lands well inside the run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(base: Path, node_rank: int, port: int, *extra: str) -> subprocess.Popen:
    """One node's torchrun: static rendezvous at 127.0.0.1:port, as on a cluster with --master_addr."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "2",
               "--node_rank", str(node_rank), "--master_addr", "127.0.0.1", "--master_port", str(port),
               "-m", "autopipe", "train", "0", *folders(base), "-c", "3d_fullres", "--epochs", str(EPOCHS),
               "--iterations", "2", "--threads", "1", "--no-validation", "-q", *extra]
    log = (base / f"node{node_rank}.log").open("a")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def kill_node(node: subprocess.Popen) -> None:
    """SIGKILL a node's torchrun and its ranks, as a lost machine: torchrun starts each rank in a session of its
    own, so killing the agent's process group would leave the ranks running."""
    import psutil

    agent = psutil.Process(node.pid)
    for process in [*agent.children(recursive=True), agent]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    node.wait()


def wait_for(text: str, path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and text in path.read_text():
            return
        time.sleep(0.5)
    raise AssertionError(f"'{text}' never appeared in {path}")


@pytest.mark.slow
def test_two_nodes_train_a_fold_and_resume_after_one_is_killed(tmp_path):
    options = SynthOptions(num_cases=3, seed=8, spacing=(3.0, 3.0, 3.0), tasks=("segmentation",))
    synthesize_cohort(tmp_path / "raw_data" / DATASET, options, workers=1, progress=False)
    assert main(["plan", *folders(tmp_path), "-j", "1", "-q", "--throughput-gflops", "50"]) == 0
    assert main(["preprocess", *folders(tmp_path), "-j", "1", "-q", "--no-qc"]) == 0
    fold = tmp_path / "results" / DATASET / "3d_fullres" / "fold_0"

    port = free_port()
    nodes = [start_node(tmp_path, rank, port) for rank in (0, 1)]
    try:
        wait_for(f"epoch 2/{EPOCHS}", fold / "training.log", timeout=600)
        kill_node(nodes[1])  # node 1 is lost: its agent and both its ranks
        try:  # node 0's ranks lose their peers: they fail (gloo), or hang and the operator stops the job
            nodes[0].wait(timeout=180)
        except subprocess.TimeoutExpired:
            kill_node(nodes[0])
    finally:
        for node in nodes:
            if node.poll() is None:
                kill_node(node)
    assert nodes[0].returncode != 0
    assert (fold / "checkpoint_latest.pt").is_file() and not (fold / "checkpoint_final.pt").exists()

    port = free_port()
    nodes = [start_node(tmp_path, rank, port, "--continue") for rank in (0, 1)]
    for node in nodes:
        assert node.wait(timeout=600) == 0, (tmp_path / "node0.log").read_text()[-3000:]
    log = (fold / "training.log").read_text()
    assert "resuming 3d_fullres fold 0 after epoch" in log and f"epoch {EPOCHS}/{EPOCHS}" in log
    assert (fold / "checkpoint_final.pt").is_file() and not (fold / "checkpoint_latest.pt").exists()
