"""`autopipe check`: find every problem in a cohort before anything runs, without writing into it.

    check_cohort(root) -> [Problem, ...]   errors first, then warnings; cohort-wide, then by case

Order of work: dataset.json (if it cannot be loaded, that is the only problem reported), the
folder layout (names, channels, labels, counts), then each case in a worker process (every image
and label read once, then the case's k-space file), then cohort-wide statistics and the clinical
table. Files are only ever opened for reading; nothing is cached in the cohort folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from autopipe.cohort.check_clinical import clinical_problems
from autopipe.cohort.check_files import (
    affine_problems,
    complex_problems,
    gzip_problems,
    outside_problems,
    qform_problems,
)
from autopipe.cohort.check_images import (
    constant_problems,
    dimension_problems,
    grid_problems,
    label_value_problems,
    label_values,
    lesion_problems,
    nonfinite_problems,
    read_image,
    spacing_problems,
)
from autopipe.cohort.check_kspace import kspace_problems
from autopipe.cohort.dataset import CHANNEL_FILE, DatasetSpec, load_dataset, training_case_ids
from autopipe.cohort.image_io import Header, Volume
from autopipe.cohort.problem import Problem, error, format_problem, relative, sort_problems, warning
from autopipe.errors import AutopipeError, first_line
from autopipe.executor import Workers, parallel_map

__all__ = ["Problem", "check_cohort", "format_problem"]

MIN_CASES_FOR_FIVE_FOLDS = 5
# Files that belong to an image header in another file (ITK's detached-header formats).
COMPANION_ENDINGS = {".mhd": (".raw", ".zraw"), ".nhdr": (".raw", ".raw.gz")}


@dataclass(frozen=True)
class CaseReport:
    """What checking one case found, and its channel-0 voxel spacing for the cohort-wide statistics."""

    problems: list[Problem]
    spacing: tuple[float, ...] | None


def check_cohort(root: Path, workers: Workers = 1, progress: bool = True, cache: dict | None = None) -> list[Problem]:
    """Every problem found in the cohort at `root`; never raises on bad data and never writes there.

    `cache` (autopipe.cohort.gate) maps case -> an earlier CaseReport with the files' sizes and times; cases
    whose files did not change are not read again, and the cache is updated in place.
    """
    root = Path(root)
    if not root.is_dir():
        return [error(None, None, f"{root} is not a folder", "give the path of the cohort folder (DatasetNNN_Name)")]
    try:
        spec = load_dataset(root)
    except AutopipeError as exc:
        return [error(None, "dataset.json", exc.what, exc.fix or "see raw_data/README.md for an example")]
    except OSError as exc:
        return [error(None, "dataset.json", f"cannot be read ({first_line(exc)})", "check the file's permissions")]
    cases = training_case_ids(spec)
    problems = naming_problems(spec, "imagesTr")
    if not cases:
        return sort_problems([*problems, no_cases_problem(spec)])
    problems += missing_channel_problems(spec, "imagesTr", cases) + label_file_problems(spec, cases)
    problems += count_problems(spec, cases) + kspace_folder_problems(spec, cases) + collision_problems(cases)
    problems += outside_problems(spec.root, read_paths(spec, cases))
    if (root / "imagesTs").is_dir():
        problems += naming_problems(spec, "imagesTs")
        problems += missing_channel_problems(spec, "imagesTs", training_case_ids(spec, "imagesTs"))
    reports = _case_reports(spec, cases, workers, progress, cache)
    problems += [p for report in reports for p in report.problems]
    problems += spacing_problems({c: r.spacing for c, r in zip(cases, reports, strict=True) if r.spacing})
    problems += clinical_problems(spec, cases)
    return sort_problems(problems)


def no_cases_problem(spec: DatasetSpec) -> Problem:
    """imagesTr missing, or holding no file named like a case image."""
    example = f"CASE_0000{spec.file_ending}"
    if not (spec.root / "imagesTr").is_dir():
        return error(None, "imagesTr", "the folder of training images is missing",
                     f"create imagesTr/ with one file per case and channel, named like {example}")
    return error(None, "imagesTr", f"holds no image named like {example}",
                 f"name each image CASE_XXXX{spec.file_ending} (XXXX = 4-digit channel index)")


def naming_problems(spec: DatasetSpec, folder: str) -> list[Problem]:
    """Files that do not follow CASE_XXXX<ending> (warning, ignored) or name an undeclared channel (error)."""
    directory = spec.root / folder
    if not directory.is_dir():
        return []
    problems = []
    companions = COMPANION_ENDINGS.get(spec.file_ending, ())
    for path in sorted(directory.iterdir()):
        name = path.name
        if name.startswith(".") or name.endswith(companions):
            continue
        match = CHANNEL_FILE.match(name[: -len(spec.file_ending)]) if name.endswith(spec.file_ending) else None
        if match is None or not path.is_file():
            problems.append(warning(None, f"{folder}/{name}", f"does not follow the naming CASE_XXXX{spec.file_ending}"
                                                              " and is ignored",
                                    f"rename it like CASE_0000{spec.file_ending} (XXXX = 4-digit channel index), "
                                    f"or move it out of {folder}/"))
        elif int(match.group("channel")) not in spec.channel_names:
            declared = ", ".join(f"{i} ({n})" for i, n in spec.channel_names.items())
            problems.append(error(match.group("case"), f"{folder}/{name}",
                                  f"channel {int(match.group('channel'))} is not declared in dataset.json "
                                  f"channel_names (declared: {declared})",
                                  "declare the channel in dataset.json 'channel_names', or remove the file"))
    return problems


def missing_channel_problems(spec: DatasetSpec, folder: str, cases: list[str]) -> list[Problem]:
    """Every case needs one file per declared channel."""
    return [error(case, relative(spec.root, spec.image_path(case, channel, folder)),
                  f"missing: channel {channel} ({name}) of this case",
                  "add the file: every case needs one image per channel in dataset.json 'channel_names'")
            for case in cases for channel, name in spec.channel_names.items()
            if not spec.image_path(case, channel, folder).is_file()]


def label_file_problems(spec: DatasetSpec, cases: list[str]) -> list[Problem]:
    """A label map per training case, and no label map without images."""
    directory = spec.root / "labelsTr"
    if not directory.is_dir():
        return [error(None, "labelsTr", "the folder of label maps is missing",
                      f"create labelsTr/ with one label map per case, named like CASE{spec.file_ending}")]
    problems = [error(case, relative(spec.root, spec.label_path(case)), "label map is missing",
                      f"add the case's label map (named like the case, no channel suffix: {case}{spec.file_ending})")
                for case in cases if not spec.label_path(case).is_file()]
    known = set(cases)
    for path in sorted(directory.iterdir()):
        if path.name.startswith("."):
            continue
        file = f"labelsTr/{path.name}"
        if not path.name.endswith(spec.file_ending):
            problems.append(warning(None, file, f"is not a {spec.file_ending} label map and is ignored",
                                    "move it out of labelsTr/"))
        elif path.name[: -len(spec.file_ending)] not in known:
            problems.append(error(path.name[: -len(spec.file_ending)], file, "label map without images in imagesTr",
                                  "add the case's images to imagesTr/, or remove this label map"))
    return problems


def count_problems(spec: DatasetSpec, cases: list[str]) -> list[Problem]:
    """numTraining must match the cases found; fewer than 5 cases shrink cross-validation."""
    problems = []
    if len(cases) != spec.num_training:
        problems.append(error(None, "dataset.json", f"numTraining is {spec.num_training} but imagesTr holds "
                                                    f"{len(cases)} cases",
                              f"set numTraining to {len(cases)}, or add the missing cases"))
    if len(cases) < MIN_CASES_FOR_FIVE_FOLDS:
        problems.append(warning(None, "imagesTr", f"only {len(cases)} training case(s): cross-validation will use "
                                                  "fewer than 5 folds and its scores will be shaky",
                                "add cases if you have them"))
    return problems


def collision_problems(cases: list[str]) -> list[Problem]:
    """Case ids that differ only in letter case name the same files on macOS and Windows file systems."""
    seen: dict[str, str] = {}
    problems = []
    for case in sorted(cases):
        other = seen.setdefault(case.lower(), case)
        if other != case:
            problems.append(error(case, None, f"its id differs from {other} only in upper/lower case: on "
                                              "case-insensitive file systems (macOS, Windows) the two overwrite "
                                              "each other's files", f"rename one of {other} and {case}"))
    return problems


def read_paths(spec: DatasetSpec, cases: list[str]) -> dict[str, Path]:
    """Every file or folder the cohort makes autopipe read, by the name a problem gives it."""
    paths: dict[str, Path] = {}
    clinical = spec.clinical_path()
    if clinical is not None:
        paths["dataset.json clinical file"] = clinical
    if spec.kspace is not None:
        paths["dataset.json kspace folder"] = spec.root / spec.kspace.folder
    for case in cases:
        for channel in spec.channel_names:
            path = spec.image_path(case, channel)
            paths[relative(spec.root, path)] = path
        paths[relative(spec.root, spec.label_path(case))] = spec.label_path(case)
    return {what: path for what, path in paths.items() if path.exists()}


def kspace_folder_problems(spec: DatasetSpec, cases: list[str]) -> list[Problem]:
    """The declared k-space folder must exist; files for unknown cases are flagged."""
    if spec.kspace is None:
        return []
    folder = spec.root / spec.kspace.folder
    if not folder.is_dir():
        return [error(None, spec.kspace.folder, "the k-space folder is missing (dataset.json declares it)",
                      "add it with one CASE.h5 per case, or remove 'kspace' from dataset.json")]
    known = set(cases)
    return [warning(None, relative(spec.root, path), "is not named after a case in imagesTr (CASE.h5) and is ignored",
                    "check the file name (CASE as in imagesTr), or move the file out of the k-space folder")
            for path in sorted(folder.iterdir())
            if not path.name.startswith(".") and (path.suffix != ".h5" or path.stem not in known)]


def case_files_key(spec: DatasetSpec, case: str) -> list:
    """What a case's check depends on: dataset.json and each of its files' size and modification time."""
    paths = [spec.root / "dataset.json", *(spec.image_path(case, c) for c in spec.channel_names),
             spec.label_path(case)]
    kspace = spec.kspace_path(case)
    paths += [kspace] if kspace is not None else []
    key = []
    for path in paths:
        try:
            stat = path.stat()
            key.append([relative(spec.root, path), stat.st_size, stat.st_mtime_ns])
        except OSError:
            key.append([relative(spec.root, path), None, None])
    return key


def _case_reports(spec: DatasetSpec, cases: list[str], workers: Workers, progress: bool,
                  cache: dict | None) -> list[CaseReport]:
    if cache is None:
        return parallel_map(check_case, [(spec, case) for case in cases], workers, "check", enabled=progress)
    keys = {case: case_files_key(spec, case) for case in cases}
    todo = [c for c in cases if cache.get(c, {}).get("key") != keys[c]]
    fresh = parallel_map(check_case, [(spec, case) for case in todo], workers, "check", enabled=progress) \
        if todo else []
    for case, report in zip(todo, fresh, strict=True):
        cache[case] = {"key": keys[case], "problems": [dataclasses.asdict(p) for p in report.problems],
                       "spacing": None if report.spacing is None else list(report.spacing)}
    return [CaseReport([Problem(**p) for p in cache[c]["problems"]],
                       None if cache[c]["spacing"] is None else tuple(cache[c]["spacing"])) for c in cases]


def check_case(job: tuple[DatasetSpec, str]) -> CaseReport:
    """Every per-case check (runs in a worker process); a check that fails unexpectedly becomes a Problem."""
    spec, case = job
    try:
        return _check_case(spec, case)
    except Exception as exc:  # one broken case must never hide the others' problems
        return CaseReport([error(case, None, f"could not be checked ({type(exc).__name__}: {first_line(exc)})",
                                 "report this to the autopipe maintainers, with the case's files")], None)


def _check_case(spec: DatasetSpec, case: str) -> CaseReport:
    problems: list[Problem] = []
    grids: dict[str, Header] = {}  # file -> grid: the channels in order, then the label
    channel0 = None
    for channel in spec.channel_names:
        file = relative(spec.root, spec.image_path(case, channel))
        volume, found = _scan_problems(spec.root, case, file)
        problems += found
        if volume is not None and not _geometry_failed(found):
            grids[file] = Header(volume.shape, volume.affine, volume.data.dtype)
        if volume is not None:
            channel0 = volume.data if channel == 0 else channel0
    spacing = next((grid.spacing for grid in grids.values() if len(grid.shape) == 3), None)
    label_file = relative(spec.root, spec.label_path(case))
    label, found = _label_problems(spec, case, label_file)
    problems += found
    if label is not None and not _geometry_failed(found):
        grids[label_file] = Header(label.shape, label.affine, label.data.dtype)
    if grids:
        reference_file, reference = next(iter(grids.items()))
        for file, grid in list(grids.items())[1:]:
            problems += grid_problems(reference, reference_file, grid, case, file, is_label=file == label_file)
    kspace_path = spec.kspace_path(case)
    if kspace_path is not None and kspace_path.parent.is_dir():  # a missing folder is reported once, cohort-wide
        problems += kspace_problems(kspace_path, channel0, case, relative(spec.root, kspace_path), spec.labels)
    return CaseReport(problems, spacing)


GEOMETRY_ERRORS = ("affine holds NaN", "a spacing of zero")


def _geometry_failed(problems: list[Problem]) -> bool:
    """The file's grid cannot be compared with others (its affine is NaN or degenerate)."""
    return any(p.severity == "error" and any(w in p.what for w in GEOMETRY_ERRORS) for p in problems)


def _stored_problems(root: Path, case: str, file: str) -> tuple[Volume | None, list[Problem]]:
    """Read one file after its gzip check, and check its header geometry and value type."""
    damaged = gzip_problems(root / file, case, file)
    if damaged:
        return None, damaged
    volume, problems = read_image(root / file, case, file)
    if volume is None:
        return None, problems
    problems = affine_problems(volume.affine, case, file) + qform_problems(root / file, case, file)
    complex_values = complex_problems(volume.data, case, file)
    if complex_values:  # the voxel checks compare values: not defined for complex ones
        return None, problems + complex_values
    return volume, problems


def _scan_problems(root: Path, case: str, file: str) -> tuple[Volume | None, list[Problem]]:
    """Read one channel image (if it exists: a missing file is the layout checks' job) and check its voxels."""
    if not (root / file).is_file():
        return None, []
    volume, problems = _stored_problems(root, case, file)
    if volume is None:
        return None, problems
    problems += dimension_problems(volume.shape, case, file) + nonfinite_problems(volume.data, case, file)
    return volume, problems + constant_problems(volume.data, case, file)


def _label_problems(spec: DatasetSpec, case: str, file: str) -> tuple[Volume | None, list[Problem]]:
    """Read the case's label map (if it exists) and check its values."""
    if not (spec.root / file).is_file():
        return None, []
    label, problems = _stored_problems(spec.root, case, file)
    if label is None:
        return None, problems
    values = label_values(label.data)
    problems += dimension_problems(label.shape, case, file)
    problems += nonfinite_problems(label.data, case, file, kind="label map")
    problems += label_value_problems(values, spec.labels, case, file)
    return label, problems + lesion_problems(values, case, file)
