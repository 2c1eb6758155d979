"""TensorBoard as the triplet-loss MNIST write-up shows it: the model graph, per-epoch
histograms of the validation triplets' values, and nine training images with their labels
(also `plots/samples.png`)."""

from __future__ import annotations

import numpy as np
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tripletlab.config import RunConfig, merge
from tripletlab.data import load_mnist
from tripletlab.training import TensorBoardCallback, Trainer
from tripletlab.viz import SamplesCallback


def test_graph_histograms_and_samples_are_in_the_event_files(tmp_path):
    train = load_mnist("train")
    config = merge(RunConfig(), {"train": {"batch_size": 64, "epochs": 2}})
    trainer = Trainer(config, callbacks=[TensorBoardCallback(), SamplesCallback()])
    trainer.fit(train.subset(np.arange(400)), train.subset(np.arange(400, 600)),
                run_dir=tmp_path)  # fmt: skip
    events = EventAccumulator(str(tmp_path / "tensorboard"),
                              size_guidance={"histograms": 0, "images": 0})  # fmt: skip
    events.Reload()
    tags = events.Tags()
    graph = events.Graph()
    names = [node.name for node in graph.node]
    assert any("SeedCNNBackbone" in name for name in names)
    assert any("Linear[head]" in name for name in names)
    for tag in ("val/triplet_diff", "val/triplet_loss"):
        assert tag in tags["histograms"]
        histograms = events.Histograms(tag)
        assert [h.step for h in histograms] == [1, 2]
        assert histograms[0].histogram_value.num == 200  # one triplet per validation image
    diff = events.Histograms("val/triplet_diff")
    assert diff[1].histogram_value.sum < diff[0].histogram_value.sum  # triplets pull apart
    assert "val/loss" in tags["scalars"]
    assert tags["images"] == ["train/samples"]
    picture = Image.open(tmp_path / "plots" / "samples.png")
    assert picture.size[0] > 300 and picture.size[1] > 300
