import pytest
import torch

from crnn.charset import Charset
from crnn.checkpoint import load_checkpoint, save_checkpoint
from crnn.model import CRNN, CRNNConfig
from crnn.widen import widen
from jobs import widen as widen_job

torch.set_num_threads(1)   # tiny models; the machine is shared

TINY = CRNNConfig(channels=(4, 8, 8, 8, 16, 16, 16), lstm_hidden=8)
WIDER = dict(channels=(6, 8, 12, 8, 20, 16, 24), lstm_hidden=12)   # some layers widened, some not


@pytest.fixture
def trained_like():
    """A tiny CRNN whose every weight and BatchNorm statistic is non-trivial, as after training."""
    torch.manual_seed(0)
    model = CRNN(TINY)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if "running_var" in name else torch.randn_like(t) * 0.5)
    return model.eval()


def test_widened_model_computes_the_same_logits(trained_like):
    wide = widen(trained_like, **WIDER).eval()
    assert wide.config.channels == WIDER["channels"] and wide.config.lstm_hidden == 12
    assert sum(p.numel() for p in wide.parameters()) > sum(p.numel() for p in trained_like.parameters())
    x = torch.randn(3, 1, 32, 57)
    with torch.no_grad():
        torch.testing.assert_close(wide(x), trained_like(x), rtol=0, atol=1e-5)


def test_new_units_learn(trained_like):
    """Zero outgoing weights must still get gradients, or the new units would stay dead."""
    wide = widen(trained_like, **WIDER).train()
    logits = wide(torch.randn(2, 1, 32, 40))
    logits.logsumexp(-1).sum().backward()
    old_h, new_h = TINY.lstm_hidden, WIDER["lstm_hidden"]
    assert wide.head.weight.grad[:, old_h:new_h].abs().sum() > 0            # from new forward units
    last_conv = [m for m in wide.cnn if isinstance(m, torch.nn.Conv2d)][-1]
    assert last_conv.weight.grad[:TINY.channels[6]].abs().sum() > 0         # old units train on
    assert last_conv.weight.grad[TINY.channels[6]:].abs().sum() == 0        # new ones once their outgoing weights grow
    assert wide.rnn.weight_ih_l0.grad[:, TINY.channels[6]:].abs().sum() > 0  # from new conv channels


def test_widen_refuses_narrower(trained_like):
    with pytest.raises(ValueError, match="at least as large"):
        widen(trained_like, channels=(2, 8, 8, 8, 16, 16, 16), lstm_hidden=8)


def test_widen_job_writes_a_checkpoint_that_reads_alike(tmp_path, trained_like, capsys):
    charset = Charset()
    assert charset.num_classes == TINY.num_classes
    save_checkpoint(tmp_path / "tiny.pt", trained_like, charset, name="tiny", version="1", half=False)
    argv = [str(tmp_path / "tiny.pt"), "--channels", ",".join(map(str, WIDER["channels"])),
            "--lstm-hidden", "12", "--out", str(tmp_path / "wide.pt"), "--version", "2"]
    assert widen_job.main(argv) == 0
    wide, _, meta = load_checkpoint(tmp_path / "wide.pt")
    assert meta["version"] == "2" and meta["training"]["widened_from"] == "tiny:1"
    x = torch.randn(2, 1, 32, 48)
    with torch.no_grad():   # fp16 storage rounds the weights, hence the looser tolerance
        torch.testing.assert_close(wide(x), trained_like(x), rtol=0, atol=0.05)

    assert widen_job.main(argv[:2] + ["4"] + argv[3:]) == 2          # narrower than the model
    assert "at least as large" in capsys.readouterr().err
