"""`autopipe import`: a DICOM tree or a BIDS dataset into a new cohort, all at once or not at all.

The source is only read. The cohort is built in a scratch folder beside the destination and renamed
into place when complete, so an interrupted import leaves nothing that looks finished; an existing
destination is never touched. What was imported and skipped, and where each case came from, is recorded
by autopipe.cohort.import_records.
"""

from __future__ import annotations

import os
from pathlib import Path

from autopipe.cohort.import_records import ImportOptions, ImportResult, write_identities, write_records
from autopipe.errors import AutopipeError
from autopipe.files import scratch_folder


def source_kind(source: Path) -> str:
    """"bids" when `source` looks like a BIDS dataset (dataset_description.json or sub-* folders), else "dicom"."""
    if (source / "dataset_description.json").is_file() or any(p.is_dir() for p in source.glob("sub-*")):
        return "bids"
    return "dicom"


def run_import(source: Path, destination: Path, options: ImportOptions) -> ImportResult | None:
    """Import `source` into `destination` (a new folder); None when only the rules were shown."""
    source, destination = source.expanduser().resolve(), destination.expanduser().resolve()
    kind = source_kind(source) if options.kind == "auto" else options.kind
    if options.show_rules:
        if kind != "dicom":
            raise AutopipeError("--show-rules is for DICOM imports", fix="leave it out, or add --from dicom")
        from autopipe.cohort.import_dicom import print_rules

        print_rules(options.rules)
        return None
    if not source.is_dir():
        raise AutopipeError("the source folder does not exist", where=str(source),
                            fix="give the folder that holds the DICOM series or the BIDS dataset")
    if destination.exists():
        raise AutopipeError("the destination exists already; autopipe import only creates new folders",
                            where=str(destination), fix="choose a new name, or remove the folder yourself")
    if destination.is_relative_to(source) or source.is_relative_to(destination):
        raise AutopipeError("the destination lies inside the source (or the reverse)", where=str(destination),
                            fix="import into raw_data/, outside the source: the source is never written to")
    if not options.images_only and not destination.name.startswith("Dataset"):
        raise AutopipeError(f"cohort folders are named DatasetXXX_Name, got {destination.name!r}",
                            fix="e.g. Dataset010_MSClinic (or add --images-only for a plain folder of images)")
    destination.parent.mkdir(parents=True, exist_ok=True)
    with scratch_folder(destination.parent) as scratch:
        if kind == "dicom":
            from autopipe.cohort.import_dicom import import_dicom

            result = import_dicom(source, scratch, options)
        else:
            from autopipe.cohort.import_bids import import_bids

            result = import_bids(source, scratch, options)
        if not result.cases:
            raise AutopipeError(f"nothing could be imported from this {kind} source ({len(result.skipped)} item(s) "
                                "skipped: " + "; ".join(f"{s.what}: {s.why}" for s in result.skipped[:5]) + ")",
                                where=str(source), fix="see why each was skipped, fix the source or the rules")
        result.destination = destination
        write_records(result, scratch)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(scratch, 0o777 & ~umask)  # mkdtemp made the scratch folder private; the cohort is not
        os.replace(scratch, destination)
    write_identities(result)
    return result
