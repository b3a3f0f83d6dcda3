"""Widen a trained CRNN without changing what it computes (Net2WiderNet, Chen et al. 2016, with
zero-initialised outgoing weights instead of copied units).

Every old unit keeps its weights; new conv channels and LSTM units get the fresh model's random
incoming weights and zero outgoing weights, so the widened network reads exactly as the old one did
and training grows the new units from there. This lets a bigger model start where a trained small
one stopped instead of from scratch.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from crnn.model import CRNN


def _units(n: int) -> torch.Tensor:
    return torch.arange(n)


def _gate_rows(old: int, new: int) -> torch.Tensor:
    """LSTM weights stack the i, f, g, o gates: unit j of gate k sits at row k * hidden + j."""
    return torch.cat([k * new + _units(old) for k in range(4)])


def _both_directions(old: int, new: int) -> torch.Tensor:
    """A bidirectional LSTM's output is [forward units, backward units]."""
    return torch.cat([_units(old), new + _units(old)])


@torch.no_grad()
def _embed(new: torch.Tensor, old: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor | None = None) -> None:
    """Copy `old` into `new` at (rows, cols); weights reading from units that are new become zero."""
    if cols is None:
        new[rows] = old
        return
    reads_new_unit = torch.ones(new.shape[1], dtype=torch.bool)
    reads_new_unit[cols] = False
    new[:, reads_new_unit] = 0
    new[rows[:, None], cols[None, :]] = old


def widen(model: CRNN, channels: tuple[int, ...], lstm_hidden: int) -> CRNN:
    """Returns a wider copy of `model` that computes the same function (in eval mode).

    Args:
        model: a trained CRNN.
        channels: the 7 new conv widths, each at least the old one.
        lstm_hidden: the new LSTM width per direction, at least the old one.
    Returns:
        a new CRNN with config `channels`, `lstm_hidden`, other settings unchanged.
    """
    old_cfg = model.config
    channels = tuple(channels)
    if len(channels) != len(old_cfg.channels) or any(n < o for n, o in zip(channels, old_cfg.channels)) \
            or lstm_hidden < old_cfg.lstm_hidden:
        raise ValueError(f"widen needs 7 channel sizes and an LSTM width at least as large as the model's "
                         f"({list(old_cfg.channels)}, {old_cfg.lstm_hidden}); got {list(channels)}, {lstm_hidden}")
    wide = CRNN(dataclasses.replace(old_cfg, channels=channels, lstm_hidden=lstm_hidden))

    convs = [(m, w) for m, w in zip(model.cnn, wide.cnn) if isinstance(m, nn.Conv2d)]
    norms = [(m, w) for m, w in zip(model.cnn, wide.cnn) if isinstance(m, nn.BatchNorm2d)]
    cin = _units(1)
    for (old_conv, new_conv), (old_bn, new_bn) in zip(convs, norms):
        cout = _units(old_conv.out_channels)
        _embed(new_conv.weight, old_conv.weight, cout, cin)
        for name in ("weight", "bias", "running_mean", "running_var"):
            _embed(getattr(new_bn, name), getattr(old_bn, name), cout)
        new_bn.num_batches_tracked.copy_(old_bn.num_batches_tracked)
        cin = cout

    h_old, h_new = old_cfg.lstm_hidden, lstm_hidden
    rows = _gate_rows(h_old, h_new)
    old_rnn = dict(model.rnn.named_parameters())
    for name, new in wide.rnn.named_parameters():
        old = old_rnn[name]
        if name.startswith("bias"):
            _embed(new, old, rows)
        elif name.startswith("weight_hh"):
            _embed(new, old, rows, _units(h_old))
        else:  # weight_ih: layer 0 reads the CNN's channels, later layers both directions below
            _embed(new, old, rows, cin if name.startswith("weight_ih_l0") else _both_directions(h_old, h_new))
    classes = _units(old_cfg.num_classes)
    _embed(wide.head.weight, model.head.weight, classes, _both_directions(h_old, h_new))
    _embed(wide.head.bias, model.head.bias, classes)
    return wide.train(model.training)
