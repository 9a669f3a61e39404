"""The fully connected CRF of the paper (sections 2 and 4.2): its energy and
parameters, the pydensecrf backend, the batched PyTorch backend, refining
a split and the random search. Nothing here imports MMSegmentation, so the
CRF tools start quickly."""
