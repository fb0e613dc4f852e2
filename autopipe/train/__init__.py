"""Train what the plan instantiated: segmentation U-Nets (and, later, reconstruction and hand function)."""
