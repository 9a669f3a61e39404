"""The paper's datasets as MMSegmentation datasets, and readers for their
raw releases. Importing this package registers them in ``mmseg``'s
``DATASETS`` registry."""
