"""Throughput: inference (paper section 5), training, and the dense CRF."""
