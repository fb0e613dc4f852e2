"""The segmentation classes of a cohort: dataset.json's labels in value order, and which of them are lesion.

One definition for the plan (multitask.segmentation_classes), preprocessing (the class index stored in the
k-space slices) and the metrics: class i is the i-th label by value, background first.
"""

from __future__ import annotations


def class_order(labels: dict[str, int]) -> dict[str, int]:
    """name -> label value, sorted by value (background first): position i is class index i."""
    return dict(sorted(labels.items(), key=lambda item: item[1]))


def lesion_positions(classes: dict[str, int], lesion_labels: tuple[int, ...]) -> tuple[int, ...]:
    """Class indices (positions in `classes`) whose label value is a lesion label."""
    return tuple(i for i, value in enumerate(classes.values()) if value in lesion_labels)
