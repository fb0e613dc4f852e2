"""Preprocess a cohort on SLURM: Dask workers run as batch jobs, autopipe submits one task per case to them.

Not run here (no SLURM on the development machine); tests/test_slurm_recipe.py builds the cluster object and
checks the job script it would submit. Adapt the queue, account and sizes to your site, then, from a login
node whose file system the compute nodes share:  python dask_on_slurm.py Dataset010_MSClinic
"""

import subprocess
import sys

from dask_jobqueue import SLURMCluster

CASE_MEMORY_GB = 4  # a 1 mm case needs < 2.5 GB (autopipe.preprocess.runner.GB_PER_WORKER) plus headroom


def make_cluster() -> SLURMCluster:
    """Each job: one node share of 8 cores and 32 GB, as 8 single-threaded workers of 4 GB each."""
    return SLURMCluster(
        queue="cpu", account="my_project", walltime="04:00:00",
        cores=8, processes=8, memory=f"{8 * CASE_MEMORY_GB}GB",  # per job; each worker gets 1 core, 4 GB
        worker_extra_args=["--resources", f"MEMORY_GB={CASE_MEMORY_GB}"],  # autopipe declares its cases' memory
        job_extra_directives=["--output=logs/dask-worker-%j.out"],
        local_directory="$TMPDIR",  # node-local scratch for Dask's spill files, not the shared file system
    )


def main(dataset: str, jobs: int = 4) -> int:
    with make_cluster() as cluster:
        cluster.scale(jobs=jobs)  # 4 jobs x 8 workers = 32 cases at a time
        command = ["autopipe", "preprocess", dataset, "--scheduler", cluster.scheduler_address]
        return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
