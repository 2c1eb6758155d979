"""Data sources, in-memory image sets and batch samplers."""

from tripletlab.data.datasets import (
    DATASETS,
    TITLES,
    RunData,
    check_run_data,
    load_run_data,
    run_data,
)
from tripletlab.data.fashion import load_fashion_mnist, prepare_fashion_mnist
from tripletlab.data.images import ImageSet, load_image_file
from tripletlab.data.mnist import load_mnist, load_mnist_splits, prepare_mnist, read_source
from tripletlab.data.samplers import PKSampler, ShuffleSampler, build_sampler
from tripletlab.data.sharding import RankShard
from tripletlab.data.triplets import TRIPLET_RULES, TripletBatchSampler, make_triplets

__all__ = [
    "DATASETS",
    "TITLES",
    "TRIPLET_RULES",
    "ImageSet",
    "PKSampler",
    "RankShard",
    "RunData",
    "ShuffleSampler",
    "TripletBatchSampler",
    "build_sampler",
    "check_run_data",
    "load_fashion_mnist",
    "load_image_file",
    "load_mnist",
    "load_mnist_splits",
    "load_run_data",
    "make_triplets",
    "prepare_fashion_mnist",
    "prepare_mnist",
    "read_source",
    "run_data",
]
