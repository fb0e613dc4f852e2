"""A complete, consistent CaseProperties for tests that need a preprocessed case's properties but no preprocessing."""

from __future__ import annotations

import dataclasses

import numpy as np

from autopipe import __version__
from autopipe.anatomy.head_evidence import HeadEvidence
from autopipe.cohort.image_io import Header
from autopipe.preprocess.geometry import Grid
from autopipe.preprocess.plausibility import Measurements
from autopipe.preprocess.properties import (
    Anatomy,
    CaseProperties,
    ChannelNormalization,
    GridRecord,
    NativeGrid,
    Plausibility,
    Source,
    Transforms,
)
from autopipe.preprocess.registration import Registration
from autopipe.preprocess.storage import FORMAT_VERSION


def case_properties(case: str = "case", *, full_shape: tuple[int, int, int] = (6, 7, 8),
                    affine: np.ndarray | None = None, crop_box=((1, 4), (2, 7), (0, 8)),
                    **changes: object) -> CaseProperties:
    """A template-space case whose `grid` is `full_grid` (`full_shape`, `affine`) cropped to `crop_box`; `changes`
    replace fields."""
    affine = np.eye(4) if affine is None else np.asarray(affine, float)
    full = Grid(tuple(int(s) for s in full_shape), affine)
    box = tuple((int(lo), int(hi)) for lo, hi in crop_box)
    to_template = Registration((f"{case}_to_template_affine.mat",), (f"{case}_to_template_affine.mat",), (True,))
    measured = Measurements(whole_brain=True, method="auto", stripped_with="deepbet", decision="a head",
                            brain_ml=1200.0, foreground_ml=3000.0, brain_on_border=0.0, bias_field_range=(1.2,),
                            registration_dice=0.96)
    properties = CaseProperties(
        format_version=FORMAT_VERSION, autopipe_version=__version__, case=case, plan_digest="abc",
        source=Source((f"imagesTr/{case}_0000.nii.gz",), f"labelsTr/{case}.nii.gz"),
        native=NativeGrid.of_header(Header(full.shape, affine, np.dtype(np.float32))),
        space="template", template="mni152_2009a_sym",
        full_grid=GridRecord.of(full), crop_box=box, grid=GridRecord.of(full.crop(box)),
        transforms=Transforms("transforms", to_template, to_template.forward, {}),
        arrays=f"{case}.h5", brain_volume_ml=1200.0, lesion_volume_ml=3.5, lesion_voxels_in_grid=12,
        registration_dice=0.96,
        anatomy=Anatomy(HeadEvidence(3000.0, (150.0, 180.0, 150.0), True, 1300.0, 0.43, 0.0, True, "a head"),
                        "deepbet"),
        plausibility=Plausibility(measured, ()),
        normalization=(ChannelNormalization("zscore_brain", 94.3, 12.6, -15.9, 121.7),),
        kspace=None, timings={"read": 1.0, "register": 4.0}, seconds=5.0)
    return dataclasses.replace(properties, **changes)
