"""The CNN-LSTM sign classifier, a plain nn.Module: frozen frame encoder -> LSTM -> linear head."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from slr.models.encoder import FrameEncoder


class SignClassifier(nn.Module):
    """Logits over glosses for a batch of clips.

    Args:
        num_classes: glosses to classify; comes from the data (2000 for WLASL2000).
        backbone: the frozen frame encoder.
        lstm_hidden: LSTM hidden size per direction.
        lstm_layers: stacked LSTM layers.
        bidirectional: also run the LSTM backwards; the summary concatenates both final states.
        dropout: before the head, and between LSTM layers when there are several.
        feature_dropout: on the frame features entering the LSTM.
        feature_norm: standardize each feature dimension over the real frames (BatchNorm1d,
            trainable). Frozen features are far from zero-mean and unit-scale; without this the
            demo's LSTM stayed at chance for 60 epochs at lr 1e-3 and diverged at 3e-3, with it
            it fit in 8 (see experiments/demo).
    """

    def __init__(
        self,
        num_classes: int,
        backbone: FrameEncoder,
        lstm_hidden: int = 512,
        lstm_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.3,
        feature_dropout: float = 0.0,
        feature_norm: bool = True,
    ) -> None:
        super().__init__()
        self.encoder = backbone
        self.feature_norm = nn.BatchNorm1d(backbone.out_dim) if feature_norm else nn.Identity()
        self.feature_dropout = nn.Dropout(feature_dropout)
        self.lstm = nn.LSTM(
            input_size=backbone.out_dim,
            hidden_size=lstm_hidden,
            num_layers=lstm_layers,
            batch_first=True,
            dropout=dropout if lstm_layers > 1 else 0.0,
            bidirectional=bidirectional,
        )
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(lstm_hidden * (2 if bidirectional else 1), num_classes),
        )

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, 3, H, W) frames and (B,) true lengths -> (B, num_classes) logits."""
        return self.classify(self.encoder(frames, lengths), lengths)

    def classify(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, 1280) frame features -> (B, num_classes) logits, reading each clip's summary at
        its last real frame: the sequence is packed, so padding never enters the LSTM."""
        b, t = features.shape[:2]
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long)
        packed = pack_padded_sequence(
            features, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        # packed.data holds only the real frames, (sum of lengths, 1280): padding never reaches
        # the norm's statistics either
        x = packed.data
        if self.training and len(x) == 1 and isinstance(self.feature_norm, nn.BatchNorm1d):
            self.feature_norm.eval()  # batch statistics of one frame do not exist: use running
            x = self.feature_norm(x)
            self.feature_norm.train()
        else:
            x = self.feature_norm(x)
        x = self.feature_dropout(x)
        packed = PackedSequence(
            x, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices
        )
        _, (h_n, _) = self.lstm(packed)  # h_n: (layers * directions, B, H)
        # the last layer's final state: (B, H), or (B, 2H) with both directions concatenated
        summary = torch.cat([h_n[-2], h_n[-1]], dim=1) if self.lstm.bidirectional else h_n[-1]
        return self.head(summary)
