"""Score predictions against references: overlap, surface and lesion-wise metrics, and the postprocessing they pick."""
