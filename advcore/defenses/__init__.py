"""Input-transform defenses on [0, 1] pixel batches, and the gradients an attacker who knows them uses.

:mod:`advcore.defenses.base`: the :class:`Defense` contract (``forward``, ``estimate_gradient``
for BPDA, ``randomized``, ``params``, ``check_params``), :class:`Defended` (a model behind a
defense), :class:`BPDA`, :class:`EOT`, and the registry (:data:`DEFENSES`, :func:`get_defense`).
One module per family registers itself: :mod:`advcore.defenses.halftone` (error diffusion and
ordered dithering), :mod:`advcore.defenses.preprocess` (JPEG, bit depth, median smoothing, random
resize-and-pad). The Defense lab's evaluation is :mod:`advcore.labs.defense`.
"""

from advcore.defenses.base import (
    BPDA,
    DEFENSES,
    EOT,
    Defended,
    Defense,
    check_images,
    defense_param,
    get_defense,
    presets,
    register,
)
from advcore.defenses.halftone import (
    BAYER_SIZES,
    KERNELS,
    METHODS,
    Halftone,
    bayer_matrix,
    bayer_thresholds,
    check_method,
    error_diffusion,
    floyd_steinberg_pillow,
    halftone,
    ordered_dither,
)
from advcore.defenses.preprocess import (
    INTERPOLATIONS,
    JPEG,
    BitDepth,
    MedianSmoothing,
    RandomResizePad,
    jpeg_pillow,
    median_smooth,
    reduce_bit_depth,
    resize_pad,
)

__all__ = [
    "BAYER_SIZES",
    "INTERPOLATIONS",
    "JPEG",
    "BitDepth",
    "MedianSmoothing",
    "RandomResizePad",
    "defense_param",
    "jpeg_pillow",
    "median_smooth",
    "reduce_bit_depth",
    "resize_pad",
    "BPDA",
    "DEFENSES",
    "EOT",
    "KERNELS",
    "METHODS",
    "Defended",
    "Defense",
    "Halftone",
    "bayer_matrix",
    "bayer_thresholds",
    "check_images",
    "check_method",
    "error_diffusion",
    "floyd_steinberg_pillow",
    "get_defense",
    "halftone",
    "ordered_dither",
    "presets",
    "register",
]
