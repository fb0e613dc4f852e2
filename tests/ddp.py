"""Two CPU processes under torch.distributed (gloo) for DDP tests: start them, and join the group inside each."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import torch
import torch.multiprocessing as mp


def spawn_two_ranks(worker: Callable[..., None], *args: object) -> None:
    """Run worker(rank, port, *args) in 2 spawned processes that rendezvous on a free local port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(worker, args=(port, *args), nprocs=2, start_method="spawn")


def join_gloo(rank: int, port: int) -> None:
    """Inside a worker: join the 2-process gloo group on `port`, with one torch thread per process."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
