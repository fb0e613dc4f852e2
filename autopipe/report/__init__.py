"""`autopipe report`: one self-contained HTML file per cohort that gathers every result the pipeline wrote.

    autopipe.report.render.build_report(root, workspace)  -> the summary and sections (autopipe.report.document)
    autopipe.report.render.write_report(root, workspace)  -> results/DATASET/report.html (or the path given)

Each section collects what exists on disk and, where something does not exist yet, names the command
that makes it. Pictures are embedded as data URIs, so the file opens anywhere without network or files.
"""
