"""CRNN (Shi, Bai, Yao 2015): VGG-style CNN -> 2-layer BiLSTM -> per-frame class logits for CTC.

Input: grayscale crops of height 32 and any width, as float (B, 1, 32, W).
Output: logits (T, B, C) with T = W // 4 frames, C = charset size + 1 (blank).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


@dataclass(frozen=True)
class CRNNConfig:
    """Architecture; `small()` is the same network at half the width."""
    num_classes: int = 96
    height: int = 32
    channels: tuple[int, ...] = (64, 128, 256, 256, 512, 512, 512)
    lstm_hidden: int = 256
    lstm_layers: int = 2
    dropout: float = 0.1

    @classmethod
    def small(cls, **kw) -> "CRNNConfig":
        return cls(channels=(32, 64, 128, 128, 256, 256, 256), lstm_hidden=128, **kw)


def _conv(cin: int, cout: int, kernel=3, padding=1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=padding, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class CRNN(nn.Module):
    def __init__(self, config: CRNNConfig = CRNNConfig()):
        super().__init__()
        if config.height != 32 or len(config.channels) != 7:
            raise ValueError("CRNN expects height 32 and 7 conv channel sizes")
        self.config = config
        c = config.channels
        # Height 32 -> 1 (pools 2,2,2,2 and a final 2x3 conv); width W -> W/4 (only the first two pools halve it).
        self.cnn = nn.Sequential(
            *_conv(1, c[0]), nn.MaxPool2d(2, 2),
            *_conv(c[0], c[1]), nn.MaxPool2d(2, 2),
            *_conv(c[1], c[2]), *_conv(c[2], c[3]), nn.MaxPool2d((2, 1), (2, 1)),
            *_conv(c[3], c[4]), *_conv(c[4], c[5]), nn.MaxPool2d((2, 1), (2, 1)),
            *_conv(c[5], c[6], kernel=(2, 3), padding=(0, 1)),
        )
        self.rnn = nn.LSTM(c[6], config.lstm_hidden, num_layers=config.lstm_layers,
                           bidirectional=True, dropout=config.dropout if config.lstm_layers > 1 else 0.0)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(2 * config.lstm_hidden, config.num_classes)

    @staticmethod
    def prepare(images: torch.Tensor) -> torch.Tensor:
        """uint8 crops (B, 32, W) -> the model's input (B, 1, 32, W) in [-1, 1]; run it on the model's device."""
        return images.unsqueeze(1).float() / 127.5 - 1.0

    @staticmethod
    def frames(width: int | torch.Tensor):
        """Number of output frames for an input of this width."""
        return width // 4

    def fold_batchnorm(self) -> "CRNN":
        """For inference: fold each BatchNorm into the convolution before it (in place; eval mode only).

        The same function up to float rounding, one layer fewer per block (faster: docs/decisions.md). Training
        needs the BatchNorms, so a folded model is for reading only; checkpoints keep them.
        """
        if self.training:
            raise ValueError("fold_batchnorm is for inference: call model.eval() first")
        layers, folded = list(self.cnn), []
        while layers:
            layer = layers.pop(0)
            if isinstance(layer, nn.Conv2d) and layers and isinstance(layers[0], nn.BatchNorm2d):
                layer = fuse_conv_bn_eval(layer, layers.pop(0))
            folded.append(layer)
        self.cnn = nn.Sequential(*folded)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 1, 32, W) normalised floats. Returns logits (T, B, C)."""
        f = self.cnn(x)                          # (B, C, 1, W/4)
        f = f.squeeze(2).permute(2, 0, 1)        # (T, B, C)
        f, _ = self.rnn(f.contiguous())
        return self.head(self.dropout(f))
