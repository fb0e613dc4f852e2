"""The options of every `autopipe` command, one function per command (autopipe.cli wires them to the stages)."""

from __future__ import annotations

import argparse
from pathlib import Path

from autopipe.dask_cluster import parse_local, parse_scheduler
from autopipe.paths import Workspace
from autopipe.runtime import default_workers


def common_options() -> argparse.ArgumentParser:
    """The folder and running options every command shares."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("folders (default: under the current directory)")
    group.add_argument("--raw-dir", type=Path, help="cohorts (default ./raw_data or $AUTOPIPE_RAW)")
    group.add_argument("--plans-dir", type=Path, help="plans (default ./plans or $AUTOPIPE_PLANS)")
    group.add_argument("--preprocessed-dir", type=Path, help="default ./preprocessed or $AUTOPIPE_PREPROCESSED")
    group.add_argument("--results-dir", type=Path, help="default ./results or $AUTOPIPE_RESULTS")
    run = common.add_argument_group("running")
    run.add_argument("-j", "--workers", type=int, default=default_workers(),
                     help="worker processes for per-case work (default: all cores, %(default)s here)")
    run.add_argument("--threads", type=int,
                     help="threads for torch and ITK inside each process (default: cores / workers)")
    run.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    run.add_argument("--debug", action="store_true", help="show the traceback of unexpected failures")
    return common


def cluster_options(p: argparse.ArgumentParser) -> None:
    """Where the per-case tasks of a command run, instead of -j local processes (autopipe.dask_cluster)."""
    group = p.add_argument_group("on a Dask cluster (pip install 'autopipe[cluster]'): one task per case; every "
                                 "worker must see the same folders")
    where = group.add_mutually_exclusive_group()
    where.add_argument("--scheduler", type=_checked(parse_scheduler), metavar="tcp://HOST:PORT",
                       help="a running `dask scheduler` and its workers")
    where.add_argument("--cluster", type=_checked(parse_local), metavar="local:N",
                       help="start N worker processes on this machine for this command")


def _checked(parse):
    def convert(text: str):
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert


def comma_list(text: str | None) -> list[str] | None:
    """'a, b' -> ['a', 'b']; None stays None (an option not given)."""
    return [item.strip() for item in text.split(",")] if text else None


def dataset_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", nargs="?", metavar="DATASET",
                   help="cohort folder name (Dataset001_SynthPVL), number (1), name (SynthPVL) or path; "
                        "optional when raw_data holds one cohort")


def synth_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", type=Path, help="cohort folder to create, e.g. raw_data/Dataset001_SynthPVL")
    p.add_argument("--cases", type=int, default=20, help="number of training cases (default %(default)s)")
    p.add_argument("--test-cases", type=int, default=0, help="extra unlabeled cases in imagesTs")
    p.add_argument("--seed", type=int, default=0, help="the cohort is identical for the same seed")
    p.add_argument("--spacing", type=spacing, default=(1.0, 1.0, 1.0),
                   help="mm: one value (1, 1.5, 2) or three (0.9,0.9,3); default 1")
    p.add_argument("--orientation", default="RAS", help="axis codes of the written arrays, e.g. RAS or LPS")
    p.add_argument("--channels", default="FLAIR", help="FLAIR or FLAIR,T1")
    p.add_argument("--coils", type=int, default=8, help="receive coils in the k-space files")
    p.add_argument("--acceleration", type=float, default=7.5, help="undersampling factor of the k-space mask")
    p.add_argument("--mask", default="poisson", choices=("poisson", "gaussian", "equispaced", "random"),
                   help="sampling mask: 2D poisson disc (default), 2D gaussian, 1D equispaced or random lines")
    p.add_argument("--kspace-slices", type=int, default=12, help="slices per k-space file")
    p.add_argument("--tasks", default="segmentation,reconstruction,hand_function",
                   help="which tasks' data to write (comma-separated)")
    p.add_argument("--labels", default="auto", choices=("auto", "lesion", "tissue"),
                   help="label maps: lesion (0/1), or tissue (CSF 1, grey matter 2, white matter 3, lesion 4) as "
                        "MTLRS segments; auto (default): tissue when k-space is written, else lesion")
    p.add_argument("--force", action="store_true", help="replace an existing synthetic cohort at OUT")


def spacing(text: str) -> tuple[float, float, float]:
    try:
        values = [float(v) for v in text.replace("x", ",").split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"'{text}' is not a spacing like 1, 2 or 0.9,0.9,3") from exc
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"'{text}': give one or three positive numbers (mm)")
    return tuple(values)  # type: ignore[return-value]


def check_arguments(p: argparse.ArgumentParser) -> None:
    cluster_options(p)
    dataset_argument(p)


def import_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", type=Path, help="a folder tree of DICOM series, or a BIDS dataset (only read)")
    p.add_argument("destination", help="the cohort to create: a name like Dataset010_MSClinic (under --raw-dir) or a "
                                       "path; with --images-only, any new folder")
    p.add_argument("--from", dest="kind", choices=("auto", "dicom", "bids"), default="auto",
                   help="what SOURCE holds (default: BIDS when it has dataset_description.json or sub-* folders)")
    p.add_argument("--images-only", action="store_true",
                   help="write only CASE_0000.nii.gz ... (new patients for `autopipe predict -i`), no cohort")
    p.add_argument("--rules", type=Path, help="DICOM: a JSON file of the rules that map series to channels "
                                              "(see --show-rules)")
    p.add_argument("--show-rules", action="store_true", help="DICOM: print the default rules as JSON and stop")
    p.add_argument("--channels", default="FLAIR", help="channels in order, by suffix or sequence name: FLAIR or "
                                                       "FLAIR,T1w (default FLAIR)")
    p.add_argument("--hand-column", help="BIDS: the participants.tsv column of hand function (0 good, 1 impaired)")
    p.add_argument("--lesion-desc", default="lesion",
                   help="BIDS: the desc- entity of lesion masks in derivatives/ (default: lesion)")


def plan_arguments(p: argparse.ArgumentParser) -> None:
    cluster_options(p)
    dataset_argument(p)
    p.add_argument("--device", choices=("cpu", "cuda", "mps"), help="hardware training will run on "
                   "(default: detected)")
    p.add_argument("--memory-gb", type=float, help="memory of that device (default: detected)")
    p.add_argument("--hours", type=float, help="training time per configuration and fold "
                   "(default: 1 on a CPU; nnU-Net's full schedule on a GPU)")
    p.add_argument("--throughput-gflops", type=float,
                   help="training speed of the device (default: measured once per machine, in a few seconds, and "
                        "kept in the plans folder's .device_calibration.json); give it to pin the value")
    p.add_argument("--recalibrate", action="store_true",
                   help="measure the device's speed again (after a hardware or torch change)")


def preprocess_arguments(p: argparse.ArgumentParser) -> None:
    cluster_options(p)
    dataset_argument(p)
    p.add_argument("--force", action="store_true", help="redo cases that are already preprocessed")
    p.add_argument("--no-qc", dest="qc", action="store_false", help="skip the QC pictures (faster)")
    p.add_argument("--accept", nargs="+", metavar="CASE",
                   help="accept the failed plausibility checks of these cases (or `all`) after looking at their QC "
                        "pictures; recorded in accepted.json, and `autopipe train` then uses them")


def train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("fold", metavar="FOLD", help="cross-validation fold 0-4, or all (every case, no validation)")
    dataset_argument(p)
    p.add_argument("-c", "--configurations", help="comma-separated, e.g. 3d_fullres (default: every planned one)")
    p.add_argument("--epochs", type=int, help="override the plan's number of epochs")
    p.add_argument("--iterations", type=int, help="override the plan's iterations per epoch")
    p.add_argument("--continue", dest="resume", action="store_true",
                   help="resume an interrupted run from its last finished epoch")
    p.add_argument("--force", action="store_true", help="train again from scratch, replacing earlier results")
    p.add_argument("--device", choices=("cuda", "mps", "cpu"), help="default: the best one present")
    p.add_argument("--loader-workers", type=int, help="processes preparing batches (default: by device and cores)")
    p.add_argument("--seed", type=int, default=12345, help="same seed, same data, same result on a CPU")
    p.add_argument("--optimizer", choices=("sgd", "adam"), help="override the plan's optimizer (with its usual lr)")
    p.add_argument("--no-validation", dest="validate", action="store_false",
                   help="skip predicting and evaluating the held-out cases after training")
    p.add_argument("--no-mirror", dest="mirror", action="store_false",
                   help="validate without mirror test-time augmentation (8x faster in 3D)")


def predict_arguments(p: argparse.ArgumentParser) -> None:
    cluster_options(p)
    p.add_argument("-i", "--input", type=Path, required=True,
                   help="folder of new cases: CASE_0000.nii.gz, ... and/or k-space files CASE.h5")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="folder for CASE.nii.gz lesion masks and lesions.tsv, lesion count and volume per case "
                        "(CASE_reconstruction/_lesions.nii.gz from k-space)")
    dataset_argument(p)
    p.add_argument("-c", "--configuration", help="default: the best by cross-validation, else 3d_fullres")
    p.add_argument("--folds", help="comma-separated folds to ensemble (default: every trained fold)")
    p.add_argument("--probabilities", action="store_true", help="also write CASE_probability.nii.gz")
    p.add_argument("--bids", type=Path, metavar="DIR",
                   help="also write the masks and probabilities as a BIDS derivative dataset into DIR (the same "
                        "folder as -o or another): sub-<label>[/ses-<label>]/anat/..._desc-lesion_mask.nii.gz "
                        "and ..._label-lesion_probseg.nii.gz with JSON sidecars, and dataset_description.json; "
                        "labels from `autopipe import`'s import_sources.json, else the case id's letters and "
                        "digits (lesions.tsv stays in -o)")
    p.add_argument("--dicom-seg", action="store_true",
                   help="also write CASE_seg.dcm, a DICOM Segmentation referencing the DICOM series of channel 0; "
                        "for scans imported with `autopipe import` from DICOM")
    p.add_argument("--approach", choices=("pretrained", "sequential", "end_to_end", "joint", "mtlrs"),
                   help="for k-space files (CASE.h5): default the best per-lesion Dice of the comparison")
    p.add_argument("--no-mirror", dest="mirror", action="store_false",
                   help="without mirror test-time augmentation (8x faster in 3D, slightly less accurate)")
    p.add_argument("--device", choices=("cuda", "mps", "cpu"), help="default: the best one present")
    p.add_argument("--accept-implausible", action="store_true",
                   help="predict cases that failed a plausibility check or whose tissue contrast is not the "
                        "training scans' sequence (with a warning)")


def evaluate_arguments(p: argparse.ArgumentParser) -> None:
    cluster_options(p)
    dataset_argument(p)
    p.add_argument("-c", "--configurations", help="comma-separated (default: every trained configuration)")
    p.add_argument("--predictions", type=Path, help="evaluate this folder of CASE.nii.gz masks instead ...")
    p.add_argument("--references", type=Path, help="... against this folder of reference label maps")
    p.add_argument("--lesion-labels", default="1", help="reference labels counted as lesion (default %(default)s)")
    p.add_argument("--folds", help="comma-separated folds for the reconstruction comparison (default: every "
                                   "trained fold)")


def demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", type=Path, default=Path("autopipe_demo"),
                   help="folder for the demo's raw_data, plans, ... (default ./autopipe_demo)")
    p.add_argument("--cases", type=int, default=16, help="synthetic cases (default %(default)s)")
    p.add_argument("--minutes", type=float, default=6.0,
                   help="training time per configuration; the plan sizes the U-Nets to fit (default %(default)s)")


def report_arguments(p: argparse.ArgumentParser) -> None:
    dataset_argument(p)
    p.add_argument("-o", "--output", type=Path, metavar="FILE",
                   help="HTML file to write (default: results/DATASET/report.html)")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="leave out running `autopipe check` on the cohort (faster on a large cohort)")


def workspace(args: argparse.Namespace) -> Workspace:
    """The folders a command works in: the demo's own under its --workdir, else the options, environment, defaults."""
    if args.command == "demo":
        return Workspace.under(args.workdir)
    return Workspace.from_environment(raw=args.raw_dir, plans=args.plans_dir,
                                      preprocessed=args.preprocessed_dir, results=args.results_dir)
