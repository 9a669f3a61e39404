"""What the fashion-parsing datasets share in MMSegmentation."""
from mmseg.datasets import BaseSegDataset


class FashionParsingDataset(BaseSegDataset):
    """A dataset in the layout ``tools/convert_data.py`` writes: JPEG photos
    and PNG label maps.

    Background (index 0) is a class and counts in pixel accuracy, as in the
    paper (section 4.1), so ``reduce_zero_label`` is False. Subclasses set
    ``METAINFO``.
    """

    def __init__(self,
                 img_suffix='.jpg',
                 seg_map_suffix='.png',
                 reduce_zero_label=False,
                 **kwargs) -> None:
        super().__init__(
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=reduce_zero_label,
            **kwargs)
