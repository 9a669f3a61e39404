"""Model parts of the paper that MMSegmentation does not have."""
from .concat_fpn_head import ConcatFPNHead

__all__ = ['ConcatFPNHead']
