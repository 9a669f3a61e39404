"""The report: the paper's cited figures, the tables regenerated beside them,
the claims and Figures 1 and 3."""
