"""The mmengine plumbing a reader of the paper can skip: training and testing
set-up, run state and resume, checkpoints, pretrained weights, hooks and the
DVCLive backend."""
