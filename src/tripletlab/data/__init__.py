"""Data sources, in-memory image sets and batch samplers."""

from tripletlab.data.images import ImageSet, load_image_file
from tripletlab.data.mnist import load_mnist, prepare_mnist, read_source
from tripletlab.data.samplers import PKSampler, ShuffleSampler

__all__ = [
    "ImageSet",
    "PKSampler",
    "ShuffleSampler",
    "load_image_file",
    "load_mnist",
    "prepare_mnist",
    "read_source",
]
