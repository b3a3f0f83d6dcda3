"""Checkpoint averaging (crnn.checkpoint.average_checkpoints, python -m jobs.average)."""

import torch

from crnn.charset import Charset
from crnn.checkpoint import load_checkpoint, save_checkpoint
from crnn.model import CRNN, CRNNConfig
from jobs import average

TINY = CRNNConfig(channels=(4, 4, 8, 8, 8, 8, 8), lstm_hidden=8, lstm_layers=1)


def _save(path, config, seed, version):
    torch.manual_seed(seed)
    model = CRNN(config)
    with torch.no_grad():  # every float tensor random (BatchNorm's too), so each one's average is checked
        for v in model.state_dict().values():
            if v.is_floating_point():
                v.uniform_(0.5, 1.5)
    save_checkpoint(path, model, Charset(), name="tiny", version=version, training={"steps": seed})
    return path


def test_average_is_the_mean_of_the_weights(tmp_path):
    a = _save(tmp_path / "a.pt", TINY, 1, "a")
    b = _save(tmp_path / "b.pt", TINY, 2, "b")
    out = tmp_path / "avg.pt"
    assert average.main([str(a), str(b), "--out", str(out), "--version", "ab"]) == 0

    (ma, _, _), (mb, _, _), (mo, charset, meta) = (load_checkpoint(p) for p in (a, b, out))
    sa, sb, so = ma.state_dict(), mb.state_dict(), mo.state_dict()
    assert sa.keys() == so.keys()
    for k, v in so.items():
        if v.is_floating_point():
            assert not torch.equal(sa[k], sb[k]), k
            torch.testing.assert_close(v, (sa[k] + sb[k]) / 2, atol=2e-3, rtol=2e-3)  # fp16 storage
        else:
            assert torch.equal(v, sa[k])
    assert meta["version"] == "ab" and meta["name"] == "tiny"
    assert meta["training"]["averaged_from"] == ["tiny:a", "tiny:b"]
    assert charset.symbols == Charset().symbols


def test_average_refuses_different_models(tmp_path, capsys):
    a = _save(tmp_path / "a.pt", TINY, 1, "a")
    wider = _save(tmp_path / "w.pt", CRNNConfig(channels=(4, 4, 8, 8, 8, 8, 8), lstm_hidden=16, lstm_layers=1), 2, "w")
    out = tmp_path / "avg.pt"
    assert average.main([str(a), str(wider), "--out", str(out), "--version", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "different architecture" in err and "w.pt" in err
    assert not out.exists()

    assert average.main([str(a), "--out", str(out), "--version", "x"]) == 2
    assert "at least two" in capsys.readouterr().err
