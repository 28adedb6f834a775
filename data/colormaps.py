"""Class colour maps: the Pascal VOC colour map that masks are drawn in, and the default palette of classes
without colours of their own."""
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


BASE_COLOURS = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
                (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
                (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0),
                (255, 215, 180), (0, 0, 128), (128, 128, 128)]
"""Class 0 black, then Trubetskoy's 20 distinct colours; further classes get seeded random colours."""


def default_palette(num_classes):
    """(num_classes, 3) uint8 RGB colours."""
    extra = np.random.default_rng(0).integers(0, 256, size=(max(num_classes - len(BASE_COLOURS), 0), 3))
    return np.concatenate([np.array(BASE_COLOURS, np.uint8), extra.astype(np.uint8)])[:num_classes]
