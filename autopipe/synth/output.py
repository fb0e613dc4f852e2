"""Put a synthetic cohort in place all at once, and never over anything but another synthetic cohort."""

from __future__ import annotations

import shutil
from pathlib import Path

from autopipe.errors import AutopipeError
from autopipe.executor import Workers
from autopipe.synth.cohort import SynthOptions, synthesize_cohort


def synthesize_atomically(out: Path, options: SynthOptions, workers: Workers, force: bool = False,
                          progress: bool = True) -> dict:
    """Synthesize into a hidden sibling folder and rename it into place when complete.

    A crash leaves no cohort that looks finished; an existing folder is only replaced with --force
    and only when it is itself a synthetic cohort (it has groundtruth/generator.json), so real data
    can never be overwritten.
    """
    out = out.expanduser().resolve()
    if out.exists() and any(out.iterdir()):
        if not force:
            raise AutopipeError(f"{out} exists and is not empty",
                                fix="choose another folder, or add --force to replace a synthetic cohort there")
        if not (out / "groundtruth" / "generator.json").is_file():
            raise AutopipeError(f"{out} is not a synthetic cohort (no groundtruth/generator.json); "
                                "autopipe never overwrites other data", fix="choose another folder")
    partial = out.parent / f".{out.name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    try:
        summary = synthesize_cohort(partial, options, workers=workers, progress=progress)
    finally:
        if partial.exists() and not (partial / "dataset.json").is_file():  # failed or interrupted
            shutil.rmtree(partial)
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return summary
