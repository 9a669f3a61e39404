"""Running the DVC pipeline (dvc.yaml): its independent stages side by
side on the GPUs of one machine or on a SLURM cluster, with DVC keeping
the record."""
