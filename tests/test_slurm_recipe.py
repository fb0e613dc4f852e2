"""The SLURM recipes in docs/slurm (not run here: no SLURM) are checked by the libraries that will read them:
dask-jobqueue builds the worker job script, bash parses the sbatch file and torchrun's own parser its launch."""

import importlib.util
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "docs" / "slurm"


def test_dask_jobqueue_builds_the_worker_jobs_autopipe_needs():
    pytest.importorskip("dask_jobqueue")
    spec = importlib.util.spec_from_file_location("dask_on_slurm", RECIPES / "dask_on_slurm.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    with recipe.make_cluster() as cluster:
        script = cluster.job_script()
    directives = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert "#SBATCH -p cpu" in directives and "#SBATCH --cpus-per-task=8" in directives
    assert any(line.startswith("#SBATCH --mem=") for line in directives)
    worker = script.splitlines()[-1]
    assert "distributed.cli.dask_worker" in worker
    # 8 single-threaded workers per job, each declaring the memory autopipe's preprocessing tasks ask for
    assert "--nworkers 8" in worker and "--nthreads 1" in worker
    assert f"--resources MEMORY_GB={recipe.CASE_MEMORY_GB}" in worker


def test_the_torchrun_sbatch_file_parses_in_bash_and_torchrun():
    path = RECIPES / "train_multinode.sbatch"
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    text = path.read_text()
    directives = re.findall(r"^#SBATCH (--[a-z-]+)=(\S+)$", text, flags=re.M)
    assert dict(directives)["--nodes"] == "2" and len(directives) == text.count("#SBATCH ")
    launch = re.search(r"^srun (torchrun .*?)$(?!\\)", text.replace("\\\n", " "), flags=re.M)[1]
    words = shlex.split(launch.replace('"$SLURM_NNODES"', "2").replace('"$SLURM_JOB_ID"', "123")
                        .replace('"$head_node:29500"', "node01:29500").replace('"$fold"', "0"))
    from torch.distributed.run import get_args_parser

    args = get_args_parser().parse_args(words[1:])
    assert (args.nnodes, args.nproc_per_node, args.rdzv_backend) == ("2", "4", "c10d")
    assert args.module and args.training_script == "autopipe"
    assert args.training_script_args == ["train", "0", "--continue"]


def test_the_readme_shows_the_recipes_as_they_are():
    readme = (ROOT / "README.md").read_text()
    for name in ("dask_on_slurm.py", "train_multinode.sbatch"):
        blocks = re.findall(rf"<!-- from docs/slurm/{re.escape(name)} -->\n```\w*\n(.*?)```", readme, flags=re.S)
        assert blocks, f"README shows no part of {name}"
        for block in blocks:
            assert block in (RECIPES / name).read_text(), f"README's copy of {name} drifted from the file"
