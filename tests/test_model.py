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
