"""Training and testing through mmengine's Runner (paper section 4): the run
config shared by both, the run record, resume, mixed precision, the
score-saving hook and the DVCLive backend."""
