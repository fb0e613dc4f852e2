"""`autopipe synth`: realistic synthetic brain-MRI cohorts with white-matter lesions, made offline.

Each subject is the ICBM152 2009 template (shipped with nilearn) under a random pose and a smooth
random deformation, with a skull and scalp, periventricular lesions, FLAIR (and T1) contrast, bias
field, Rician noise, a multicoil k-space slab and a hand-function label driven by the lesion load in
the motor white matter. Every random choice is a recorded parameter, so any subject can be rebuilt.

    template      the anatomical template and the regions derived from it (ventricles, motor region)
    fields        smooth random fields (cubic B-spline control grids)
    geometry      pose, deformation, image grids, thick-slice supersampling
    resample      template maps onto an image grid with SimpleITK
    head          CSF rim, skull and scalp around the brain
    lesions       lesion parameters and their partial-volume map
    tissues       tissue fractions per voxel and the ground-truth label maps
    contrast      intensities, texture, bias, phase, Rician noise, int16 storage
    kspace        coil maps, k-space, sampling mask
    handfunction  the logistic hand-function model
    subject       one subject: sample, then render
    groundtruth   the groundtruth/ folder and JSON records
    cohort        SynthOptions and synthesize_cohort: the cohort folder
    output        synthesize_atomically: staging folder, then rename
"""
