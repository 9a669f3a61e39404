"""The paper's model (section 2): its feature pyramid (equation 1) and its
segmentation head."""
from .concat_fpn_head import ConcatFPNHead
from .paper_fpn import PaperFPN

__all__ = ['ConcatFPNHead', 'PaperFPN']
