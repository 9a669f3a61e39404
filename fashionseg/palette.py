"""Label colours for the datasets' MMSegmentation ``METAINFO``."""


def label_palette(num_classes: int) -> list:
    """The PASCAL VOC colour map: index 0 black, then distinct colours.

    Each label's bits are spread over the three channels, most significant
    first, so that neighbouring labels get clearly different colours.
    """
    palette = []
    for label in range(num_classes):
        r = g = b = 0
        c = label
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette.append([r, g, b])
    return palette
