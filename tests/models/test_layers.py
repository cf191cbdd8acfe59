"""BatchRenorm3d against its definition (Ioffe 2017), and the norm/act/conv factories."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from models.layers import BatchRenorm3d, ConvNormAct, check_spatial_size, get_act, get_norm

C = 3


def _pair(momentum: float = 0.1, **kwargs) -> tuple[BatchRenorm3d, nn.BatchNorm3d]:
    torch.manual_seed(0)
    brn = BatchRenorm3d(C, momentum=momentum, **kwargs)
    bn = nn.BatchNorm3d(C, momentum=momentum)
    with torch.no_grad():
        for p in (brn.weight, brn.bias):
            p.copy_(torch.randn(C))
        bn.weight.copy_(brn.weight)
        bn.bias.copy_(brn.bias)
    return brn, bn


def _batch(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 2 + 3 * torch.randn(4, C, 5, 6, 7, generator=g)


def _manual(x, brn, running_mean, running_var, detach: bool) -> torch.Tensor:
    """Ioffe's Algorithm 1 written out; ``detach=False`` lets gradients through r and d (wrong)."""
    mean_b = x.mean(dim=(0, 2, 3, 4))
    std_b = (x.var(dim=(0, 2, 3, 4), unbiased=False) + brn.eps).sqrt()
    std = (running_var + brn.eps).sqrt()
    r_max, d_max = brn.limits()
    r = torch.clamp(std_b / std, 1 / r_max, r_max)
    d = torch.clamp((mean_b - running_mean) / std, -d_max, d_max)
    if detach:
        r, d = r.detach(), d.detach()
    view = (1, -1, 1, 1, 1)
    x_hat = (x - mean_b.view(view)) / std_b.view(view) * r.view(view) + d.view(view)
    return brn.weight.view(view) * x_hat + brn.bias.view(view)


def test_equals_batchnorm_when_r_is_1_and_d_is_0():
    brn, bn = _pair(r_max=1.0, d_max=0.0)
    for seed in range(3):  # train mode: outputs and running statistics match step by step
        x = _batch(seed)
        torch.testing.assert_close(brn(x), bn(x))
        torch.testing.assert_close(brn.running_mean, bn.running_mean)
        torch.testing.assert_close(brn.running_var, bn.running_var)
    assert int(brn.num_batches_tracked) == int(bn.num_batches_tracked) == 3
    brn.eval(), bn.eval()
    x = _batch(9)
    torch.testing.assert_close(brn(x), bn(x))


def test_warmup_is_batchnorm_with_default_schedule():
    brn, bn = _pair()  # defaults: r_max = 1, d_max = 0 for the first 5000 steps
    x = _batch(0)
    torch.testing.assert_close(brn(x), bn(x))


def test_running_statistics_update_like_batchnorm_also_after_warmup():
    brn, bn = _pair(momentum=0.3, warmup_steps=0, r_max_steps=1, d_max_steps=1)
    for seed in range(3):
        x = _batch(seed)
        brn(x), bn(x)
    torch.testing.assert_close(brn.running_mean, bn.running_mean)
    torch.testing.assert_close(brn.running_var, bn.running_var)


def test_eval_mode_uses_running_statistics():
    brn = BatchRenorm3d(C)
    with torch.no_grad():
        brn.running_mean.copy_(torch.tensor([1.0, -2.0, 0.5]))
        brn.running_var.copy_(torch.tensor([4.0, 0.25, 9.0]))
        brn.weight.copy_(torch.tensor([2.0, 1.0, -1.0]))
        brn.bias.copy_(torch.tensor([0.0, 1.0, 3.0]))
    brn.eval()
    x = _batch(1)
    view = (1, -1, 1, 1, 1)
    expected = (x - brn.running_mean.view(view)) / (brn.running_var.view(view) + brn.eps).sqrt()
    expected = expected * brn.weight.view(view) + brn.bias.view(view)
    before = brn.running_mean.clone()
    torch.testing.assert_close(brn(x), expected)
    torch.testing.assert_close(brn.running_mean, before)
    assert int(brn.num_batches_tracked) == 0


def test_train_mode_matches_definition_and_r_d_get_no_gradient():
    brn = BatchRenorm3d(C, r_max=1.5, d_max=0.5, warmup_steps=0, r_max_steps=1, d_max_steps=1)
    with torch.no_grad():  # far from the batch statistics, so both clipped and unclipped channels occur
        brn.running_mean.copy_(torch.tensor([2.0, 0.0, 2.5]))
        brn.running_var.copy_(torch.tensor([9.0, 1.0, 16.0]))
        brn.num_batches_tracked.fill_(1)
        brn.weight.copy_(torch.tensor([1.5, -0.5, 2.0]))
        brn.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
    x = _batch(2).requires_grad_()
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    rm, rv = brn.running_mean.clone(), brn.running_var.clone()

    def grads(out: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.autograd.grad((out * upstream).sum(), (x, brn.weight, brn.bias)))

    expected = _manual(x, brn, rm, rv, detach=True)
    wrong = _manual(x, brn, rm, rv, detach=False)
    out = brn(x)
    torch.testing.assert_close(out, expected)
    got = grads(out)
    for g, want in zip(got, grads(expected), strict=True):
        torch.testing.assert_close(g, want)
    assert not torch.allclose(got[0], grads(wrong)[0], atol=1e-4)  # the test can tell them apart


def test_warmup_schedule_is_linear_between_its_steps():
    brn = BatchRenorm3d(C, r_max=3.0, d_max=5.0, warmup_steps=10, r_max_steps=30, d_max_steps=20)
    expected = {0: (1.0, 0.0), 10: (1.0, 0.0), 15: (1.5, 2.5), 20: (2.0, 5.0), 30: (3.0, 5.0), 99: (3.0, 5.0)}
    for step, (r_max, d_max) in expected.items():
        brn.num_batches_tracked.fill_(step)
        assert [float(v) for v in brn.limits()] == pytest.approx([r_max, d_max])
    brn.num_batches_tracked.zero_()
    brn(_batch(0))
    assert int(brn.num_batches_tracked) == 1


def test_not_replaced_by_sync_batchnorm_conversion():
    net = nn.Sequential(nn.Conv3d(1, C, 3), BatchRenorm3d(C), nn.BatchNorm3d(C))
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    assert not isinstance(BatchRenorm3d(C), _BatchNorm)
    assert type(converted[1]) is BatchRenorm3d
    assert type(converted[2]) is nn.SyncBatchNorm  # the conversion did run


def test_state_dict_keys_dtype_and_errors():
    brn = BatchRenorm3d(C)
    assert list(brn.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert brn(_batch(0).to(torch.bfloat16)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="expects"):
        brn(torch.zeros(2, C + 1, 2, 2, 2))
    with pytest.raises(ValueError, match="more than 1 value"):
        brn(torch.zeros(1, C, 1, 1, 1))
    with pytest.raises(ValueError, match="r_max"):
        BatchRenorm3d(C, r_max=0.5)


def test_factories():
    assert isinstance(get_norm("batchrenorm", 4), BatchRenorm3d)
    assert isinstance(get_norm("Batch", 4), nn.BatchNorm3d)
    assert get_norm("instance", 4).affine
    assert get_norm(None, 4) is None
    assert (
        get_norm(("batchrenorm", {"warmup_steps": 7, "r_max_steps": 8, "d_max_steps": 9}), 4).warmup_steps
        == 7
    )
    assert get_act(("leakyrelu", {"negative_slope": 0.1})).negative_slope == 0.1
    assert [type(get_act(n)) for n in ("elu", "relu", "prelu")] == [nn.ELU, nn.ReLU, nn.PReLU]
    assert get_act(None) is None
    with pytest.raises(ValueError, match="batchrenorm"):
        get_norm("group", 4)
    with pytest.raises(ValueError, match="elu"):
        get_act("gelu")


def test_conv_norm_act_block():
    block = ConvNormAct(2, 4, 3, norm="batch", act="elu", dropout=0.1)
    assert list(dict(block.named_children())) == ["conv", "norm", "act", "drop"]
    assert block.conv.bias is None  # the norm cancels a bias
    assert block(torch.zeros(1, 2, 6, 6, 6)).shape == (1, 4, 6, 6, 6)
    down = ConvNormAct(4, 8, 2, 2)
    up = ConvNormAct(8, 4, 2, 2, transposed=True)
    assert down.conv.bias is not None
    assert up(down(torch.zeros(1, 4, 6, 6, 6))).shape == (1, 4, 6, 6, 6)
    with pytest.raises(ValueError, match=r"multiple of 4, got \(6, 8, 8\): use a patch size like 32"):
        check_spatial_size(torch.zeros(1, 1, 6, 8, 8), 4, "Net", 1)
