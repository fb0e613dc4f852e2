"""Train what the plan instantiated, one fold at a time.

    fit                 the one training loop every torch model goes through (seed, resume, DDP, checkpoints)
    segmentation_task   nnU-Net's U-Net on patches, and the joint U-Net with a whole-brain hand-function head
    joint_start         the joint U-Net's head grid, whole brains, and its start (trained U-Net, fitted head)
    slice_task          the k-space models of the reconstruction + segmentation comparison, a slice per step
    jobs                which models a fold trains, as jobs for the loop
    hand_fold           the hand-function logistic regressions on out-of-fold lesion maps (no torch loop)
    cs_weight           the compressed-sensing baseline's weight, chosen on the fold's training slices
"""
