from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tripletlab import Embedder
from tripletlab.config import ModelConfig
from tripletlab.data import load_mnist
from tripletlab.models import backbone_names, build_backbone
from tripletlab.runs import RunDir, read_checkpoint, resolve_checkpoint


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return load_mnist("test").images[:300]


def test_seed_cnn_matches_the_tutorial_network():
    embedder = Embedder()
    # Keras' summary of the tutorial model: 320 + 8,224 + 401,664 parameters.
    assert sum(p.numel() for p in embedder.parameters()) == 410_208
    out = embedder.backbone(torch.zeros(2, 1, 28, 28))
    assert out.shape == (2, 32 * 7 * 7)


def test_seed_cnn_pooling_before_relu_equals_the_tutorial_order(digits):
    """The backbone pools before its ReLUs for speed; values and gradients must equal
    the tutorial's Conv -> ReLU -> MaxPool order exactly."""
    backbone = build_backbone("seed_cnn").eval()  # dropout off: identical masks not needed
    layers = list(backbone)
    tutorial = torch.nn.Sequential(
        layers[0], layers[1], torch.nn.ReLU(), layers[2], layers[4],
        layers[5], layers[6], torch.nn.ReLU(), layers[7], layers[9], layers[10],
    )  # fmt: skip
    images = torch.from_numpy(digits[:64]).float().div(255).unsqueeze(1)
    images = (images - 0.3).requires_grad_()  # negative pixels too: ReLU must see both signs
    ours, reference = backbone(images), tutorial(images)
    assert torch.equal(ours, reference)
    (grad_ours,) = torch.autograd.grad(ours.square().sum(), images)
    (grad_reference,) = torch.autograd.grad(reference.square().sum(), images)
    torch.testing.assert_close(grad_ours, grad_reference, rtol=0, atol=0)


def test_embeddings_are_unit_float32_of_the_configured_size(digits):
    embedder = Embedder(ModelConfig(embedding_dim=64))
    vectors = embedder.embed(digits, batch_size=128)
    assert vectors.shape == (300, 64) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert embedder.training  # embed() restores the mode it found


def test_embed_is_deterministic_and_independent_of_batch_size(digits):
    embedder = Embedder()
    np.testing.assert_allclose(
        embedder.embed(digits, batch_size=7), embedder.embed(digits, batch_size=300), atol=1e-6
    )


def test_classifier_outputs_are_independent_of_batch_size(digits):
    """Passes of 7 (the last one short) fill the same rows as one pass of all the images."""
    embedder = Embedder(ModelConfig(classes=(0, 3, 5, 8), class_names=("0", "3", "5", "8")))
    vectors, probabilities = embedder.embed_and_classify(digits, batch_size=7)
    whole_vectors, whole_probabilities = embedder.embed_and_classify(digits, batch_size=300)
    assert probabilities.shape == (300, 4) and probabilities.dtype == np.float32
    np.testing.assert_allclose(vectors, whole_vectors, atol=1e-6)
    np.testing.assert_allclose(probabilities, whole_probabilities, atol=1e-6)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("classes", [(), (0, 3, 5)])
def test_no_images_give_empty_outputs(digits, classes):
    embedder = Embedder(ModelConfig(embedding_dim=16, classes=classes,
                                    class_names=tuple(str(c) for c in classes)))  # fmt: skip
    vectors, probabilities = embedder.embed_and_classify(digits[:0])
    assert vectors.shape == (0, 16) and vectors.dtype == np.float32
    if classes:
        assert probabilities.shape == (0, 3)
    else:
        assert probabilities is None


def test_rescaling_lives_inside_the_model(digits):
    embedder = Embedder().eval()
    as_uint8 = embedder(torch.from_numpy(digits[:5]))
    as_float_pixels = embedder(torch.from_numpy(digits[:5]).float())
    torch.testing.assert_close(as_uint8, as_float_pixels)


@pytest.mark.parametrize("normalize", [True, False])
def test_test_time_views_average_the_shifted_images(digits, normalize):
    torch.manual_seed(0)
    embedder = Embedder(ModelConfig(tta_shift=2, normalize=normalize))
    views = [digits] + [np.roll(digits, shift, axis=axis) for axis in (1, 2) for shift in (2, -2)]
    single = [embedder.embed(view, views=False).astype(np.float64) for view in views]
    expected = np.mean(single, axis=0)
    if normalize:
        expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(embedder.embed(digits, batch_size=64), expected, atol=1e-5)
    assert not np.allclose(single[0], expected, atol=1e-3)  # the views do change something
    assert embedder.use_views  # embed(views=False) restores it
    batches = []
    embedder.backbone.register_forward_hook(lambda module, args, out: batches.append(len(out)))
    embedder.train()  # training sees the image alone
    assert embedder(torch.from_numpy(digits[:8])).shape == (8, embedder.embedding_dim)
    embedder.eval()
    assert embedder(torch.from_numpy(digits[:8])).shape == (8, embedder.embedding_dim)
    assert batches == [8, 40]


@pytest.mark.parametrize("shift", [0, 1])
def test_mirror_views_average_the_image_and_its_mirror_image(digits, shift):
    torch.manual_seed(0)
    embedder = Embedder(ModelConfig(tta_flip=True, tta_shift=shift))
    assert embedder.views == (10 if shift else 2)
    views = []
    for image in (digits, digits[:, :, ::-1]):
        views.append(image)
        views += [np.roll(image, k, axis=axis) for axis in (1, 2) for k in (shift, -shift) if k]
    single = [embedder.embed(view.copy(), views=False).astype(np.float64) for view in views]
    expected = np.mean(single, axis=0)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(embedder.embed(digits, batch_size=40), expected, atol=1e-5)
    # The views of the mirror image are those of the image: the same embedding.
    mirrored = embedder.embed(digits[:, :, ::-1].copy())
    np.testing.assert_allclose(mirrored, embedder.embed(digits), atol=1e-5)
    assert not np.allclose(embedder.embed(digits, views=False), expected, atol=1e-3)


def test_test_time_shift_must_fit_the_image():
    with pytest.raises(ValueError, match=r"model\.tta_shift must be smaller than the image"):
        Embedder(ModelConfig(tta_shift=28))
    with pytest.raises(ValueError, match=r"model\.tta_shift must be >= 0"):
        ModelConfig(tta_shift=-1)


def test_wrong_image_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\(N, H, W\) or \(N, H, W, 1\)"):
        Embedder().embed(np.zeros((2, 28, 28, 3), dtype=np.uint8))


def test_an_image_too_small_for_the_backbone_is_a_clear_error():
    """seed_cnn pools three times: a 2 x 2 image was a RuntimeError traceback from train."""
    with pytest.raises(ValueError, match=r"1-channel images of 2 x 2 \(.*too small"):
        Embedder(ModelConfig(image_size=(2, 2)))
    assert Embedder(ModelConfig(image_size=(4, 4))).embed(np.zeros((1, 4, 4), np.uint8)).shape


def test_unknown_backbone_lists_the_known_ones():
    assert "seed_cnn" in backbone_names()
    with pytest.raises(ValueError, match="seed_cnn"):
        build_backbone("resnet9000")


def test_checkpoint_round_trip_gives_identical_embeddings(digits, tmp_path):
    embedder = Embedder(ModelConfig(embedding_dim=32))
    with torch.no_grad():  # move the weights away from their initial values
        for parameter in embedder.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    embedder.save(tmp_path / "checkpoints" / "epoch-0001", {"note": "test"})
    RunDir(tmp_path).point_checkpoints(last="epoch-0001", best="epoch-0001")
    loaded = Embedder.from_pretrained(tmp_path)
    assert loaded.config == embedder.config
    np.testing.assert_array_equal(loaded.embed(digits), embedder.embed(digits))
    state, config = read_checkpoint(tmp_path)
    assert config["note"] == "test" and set(state) == set(embedder.state_dict())
    # The weights file is safetensors: a JSON header, no pickle.
    weights = (resolve_checkpoint(tmp_path) / "model.safetensors").read_bytes()
    header = int.from_bytes(weights[:8], "little")
    assert "head.weight" in json.loads(weights[8 : 8 + header])


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Embedder.from_pretrained(tmp_path)


def test_embed_refuses_what_it_cannot_embed_correctly(digits):
    embedder = Embedder()
    with pytest.raises(ValueError, match="takes uint8 images"):
        embedder.embed(digits.astype(np.float32) / 255)  # would be divided by 255 again
    nan = np.full((2, 28, 28), np.nan, dtype=np.float32)
    with pytest.raises(ValueError, match="takes uint8 images"):
        embedder.embed(nan)
    with pytest.raises(ValueError, match="batch_size must be at least 1, got -1"):
        embedder.embed(digits, batch_size=-1)
    with pytest.raises(ValueError, match=r"expected images \(N, 28, 28\).*got shape \(2, 32, 32\)"):
        embedder.embed(np.zeros((2, 32, 32), dtype=np.uint8))
    with torch.no_grad():
        embedder.head.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf embeddings"):
        embedder.embed(digits)
