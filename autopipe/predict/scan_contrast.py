"""Is a new scan the kind of scan the models were trained on? Its tissue contrast against the training cases'.

The rule is autopipe.preprocess.contrast's; here the training cases' measurements are gathered from their
preprocessed properties (CASE.json) for `autopipe predict`. Without them (cases preprocessed by an older
autopipe, or the preprocessed folder removed) nothing can be compared, and `predict` says so instead of
staying silent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autopipe.errors import AutopipeError
from autopipe.layout import case_paths, preprocessed_dir
from autopipe.paths import Workspace
from autopipe.plan.configs import PreprocessingPlan
from autopipe.plan.splits import load_splits
from autopipe.preprocess.contrast import MIN_TRAINING_CASES, ChannelContrast, contrast_findings
from autopipe.preprocess.plausibility import Finding
from autopipe.preprocess.properties import CaseProperties, read_properties


@dataclass(frozen=True)
class TrainingContrast:
    """The training cases' contrasts, the channel names to report them by, and why no comparison can be made
    (None: it can)."""

    contrasts: list[tuple[ChannelContrast | None, ...]]
    channel_names: list[str]
    missing_because: str | None = None

    def findings(self, case: CaseProperties) -> list[Finding]:
        """What departs in `case`'s contrast from the training cases' (nothing when either is unmeasured)."""
        if self.missing_because is not None or case.contrast is None:
            return []
        return contrast_findings(case.contrast, self.contrasts, self.channel_names)


def training_contrast(workspace: Workspace, dataset: str, plan: PreprocessingPlan, splits_file: Path,
                      channel_names: Sequence[str]) -> TrainingContrast:
    """The measured contrasts of every cross-validation case of `dataset`, as preprocessed with `plan`."""
    if plan.space != "template":
        return TrainingContrast([], list(channel_names),
                                "the plan works in native space, where no tissue maps are known")
    folder = preprocessed_dir(workspace, dataset, plan.space, plan.target_spacing)
    try:
        cases = sorted({c for fold in load_splits(splits_file) for c in fold["train"] + fold["val"]})
    except AutopipeError as exc:
        return TrainingContrast([], list(channel_names), f"the training cases are unknown ({exc.what})")
    contrasts = []
    for case in cases:
        try:
            properties = read_properties(case_paths(folder, case)[1])
        except AutopipeError:
            properties = None
        if properties is not None and properties.contrast is not None:
            contrasts.append(properties.contrast)
    if len(contrasts) < MIN_TRAINING_CASES:
        return TrainingContrast(contrasts, list(channel_names),
                                f"only {len(contrasts)} of the {len(cases)} training cases in {folder} have a "
                                "measured contrast (run `autopipe preprocess --force` to measure it)")
    return TrainingContrast(contrasts, list(channel_names))
