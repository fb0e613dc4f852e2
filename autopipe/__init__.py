"""autopipe: a self-configuring pipeline for brain MRI with white-matter lesions.

Stages, one subpackage each, data flowing forward only:
cohort (read and check raw data) -> plan (fingerprint and plans.json) -> preprocess -> train
-> predict -> evaluate. `synth` makes realistic synthetic cohorts; `mri` holds the k-space physics.
"""

__version__ = "0.1.0"
