"""Reproducibility harness for Martinsson and Mogren, "Semantic Segmentation
of Fashion Images Using Feature Pyramid Networks" (ICCV workshops 2019).

``import fashionseg.mmseg_modules`` registers what the harness adds to
MMSegmentation's registries (configs do it through ``custom_imports``);
this package itself imports nothing heavy, so that the tools that do not
need MMSegmentation (the CRF, the report, the figures) start quickly.
"""
__version__ = '0.1.0'
