"""What a scan holds, judged from its voxels: the head or brain in it, whether the field of view covers a
whole brain, and whether the skull is still there.

Shared by planning (the fingerprint records this evidence per case) and preprocessing (which acts on
the same evidence per case, so a new patient at predict time is judged by the same rule).

    foreground        the object in the scan (head or brain), robust to zero or noisy background
    brain_extraction  deepbet, the learned brain extractor whose weights ship in its wheel
    head_evidence     the per-case decisions: whole brain in view? skull stripping needed?
"""
