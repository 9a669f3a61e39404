"""Reproducibility harness for Martinsson and Mogren, "Semantic Segmentation
of Fashion Images Using Feature Pyramid Networks" (ICCV workshops 2019).

``import fashionseg.mmseg_modules`` registers what the harness adds to
MMSegmentation's registries (configs do it through ``custom_imports``);
this package itself imports nothing heavy, so that the tools that do not
need MMSegmentation (the CRF, the report, the figures) start quickly.
"""
__version__ = '0.1.0'

import warnings

# mmengine's ``is_installed`` imports (and reloads) pkg_resources, whose
# import warns that it is deprecated, twice at every tool start (the
# reload's warning is attributed to importlib). The Makefile pins
# setuptools < 81, which still has it: the warning is known, so that one
# warning from those two places is silenced, and nothing else.
warnings.filterwarnings(
    'ignore', message='pkg_resources is deprecated as an API',
    category=UserWarning,
    module=r'(mmengine\.utils\.package_utils|importlib)$')
