"""The fast inference engine: its settings, the batched ``Segmenter``, the
mmengine test and validation loops that run it, and segmenting a user's
photos (``tools/segment.py``)."""
