"""Evaluation (paper section 5): per-image confusion matrices and the one
implementation of each metric, the metrics and score files, and the paired
bootstrap of the paper's claims."""
