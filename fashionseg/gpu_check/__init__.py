"""``make gpu-check``: every GPU path of the harness checked and timed in
one run (``tools/gpu_check.py``)."""
