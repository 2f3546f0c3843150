"""DNA-format data sets: layout, labels, area bins, image reading, and a sample builder.

The sample builder: `facedeid data sample`.
"""

from .dna import (
    BINS,
    IMAGE_EXTS,
    MAX_PIXELS,
    Frame,
    ImageError,
    LabelError,
    area_bin,
    atomic_write_bytes,
    boxes_to_pixels,
    face_area_share,
    pixels_to_boxes_norm,
    read_image,
    read_labels,
    scan_dataset,
    write_image,
    write_labels,
)

__all__ = [
    "BINS", "IMAGE_EXTS", "MAX_PIXELS", "Frame", "ImageError", "LabelError", "area_bin", "atomic_write_bytes",
    "boxes_to_pixels", "face_area_share", "pixels_to_boxes_norm", "read_image", "read_labels", "scan_dataset",
    "write_image", "write_labels",
]
