"""The CRNN: output shape (frames = width / 4), configurations."""

import pytest
import torch

from crnn.model import CRNN, CRNNConfig

torch.set_num_threads(1)   # tiny models; the machine is shared


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return CRNN(CRNNConfig.small()).eval()


@pytest.mark.parametrize("width", [16, 17, 37, 64, 101])
def test_output_shape_is_T_B_C_with_T_width_over_4(small_model, width):
    x = torch.randn(2, 1, 32, width)
    with torch.inference_mode():
        y = small_model(x)
    assert y.shape == (width // 4, 2, 96)
    assert CRNN.frames(width) == width // 4
    assert torch.isfinite(y).all()


def test_default_config_shape_and_small_has_fewer_parameters():
    full = CRNN(CRNNConfig()).eval()
    small = CRNN(CRNNConfig.small())
    n_full = sum(p.numel() for p in full.parameters())
    n_small = sum(p.numel() for p in small.parameters())
    assert n_small < n_full / 2                # half the width: roughly a quarter of the weights
    assert CRNNConfig.small().num_classes == 96
    with torch.inference_mode():
        assert full(torch.zeros(1, 1, 32, 48)).shape == (12, 1, 96)


def test_num_classes_and_bad_config():
    m = CRNN(CRNNConfig.small(num_classes=3)).eval()
    with torch.inference_mode():
        assert m(torch.zeros(1, 1, 32, 16)).shape == (4, 1, 3)
    with pytest.raises(ValueError):
        CRNN(CRNNConfig(height=48))


def test_fold_batchnorm_keeps_the_function_and_drops_the_batchnorms():
    torch.manual_seed(1)
    model = CRNN(CRNNConfig.small())
    with torch.no_grad():                       # BatchNorms that do something: trained-like statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.eval()
    x = torch.randn(3, 1, 32, 57)
    with torch.inference_mode():
        before = model(x)
        after = model.fold_batchnorm()(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.cnn) == 7
    assert torch.allclose(before, after, atol=1e-4, rtol=1e-4)
    assert not torch.equal(before, CRNN(CRNNConfig.small()).eval()(x))   # the check can tell models apart


def test_fold_batchnorm_refuses_a_training_model():
    with pytest.raises(ValueError, match="eval"):
        CRNN(CRNNConfig.small()).train().fold_batchnorm()
