"""Standard class colour maps that masks are drawn in."""
import numpy as np

VOC_VOID_INDEX = 255
"""Index of the VOC void/boundary colour (224, 224, 192)."""


def voc_colormap(size=256):
    """(size, 3) uint8 RGB colours of the Pascal VOC colour map: index i -> colour i, 255 -> (224, 224, 192).

    The bits of each index are spread over the three channels from the high bit down (bit 0 -> red, bit 1 ->
    green, bit 2 -> blue, then the next three bits one position lower), as the VOC development kit's
    `labelcolormap` does; 1 is (128, 0, 0), 2 is (0, 128, 0), 15 is (192, 128, 128).
    """
    index = np.arange(size)
    colours = np.zeros((size, 3), np.int64)
    for step in range(8):
        for channel in range(3):
            colours[:, channel] |= ((index >> (3 * step + channel)) & 1) << (7 - step)
    return colours.astype(np.uint8)
