"""The CNN-LSTM sign classifier, a plain nn.Module: frozen frame encoder -> LSTM (or GRU) ->
pooling over time -> linear head."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from slr.models import recurrence
from slr.models.encoder import FrameEncoder

RNNS = {"lstm": nn.LSTM, "gru": nn.GRU}
POOLINGS = ("last", "mean", "attention")


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
        rnn: "lstm" (the seed design) or "gru".
        pooling: how the RNN's outputs become one summary per clip: "last" (the final state at
            the last real frame), "mean" (the mean output over the real frames) or "attention"
            (a learned softmax weighting of the real frames' outputs).
        input_proj: 0 = none; else a Linear + ReLU + dropout (`proj_dropout`) from the frame
            features to this width before the RNN: with ~7 clips per gloss, fewer weights.
        feature_noise: training only: Gaussian noise of this std on the standardized frame
            features (after `feature_norm`), an augmentation that needs no re-extraction.
        center_clip: subtract each clip's mean frame feature (over its real frames) from its
            frames before `feature_norm`: what stays the same through a clip (signer, clothes,
            background) leaves, what moves (hands, arms) stays.
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
        rnn: str = "lstm",
        pooling: str = "last",
        input_proj: int = 0,
        proj_dropout: float = 0.0,
        feature_noise: float = 0.0,
        center_clip: bool = False,
    ) -> None:
        super().__init__()
        if rnn not in RNNS:
            raise ValueError(f"model.rnn={rnn!r}: use one of {sorted(RNNS)}")
        if pooling not in POOLINGS:
            raise ValueError(f"model.pooling={pooling!r}: use one of {list(POOLINGS)}")
        self.encoder = backbone
        self.feature_norm = nn.BatchNorm1d(backbone.out_dim) if feature_norm else nn.Identity()
        self.feature_dropout = nn.Dropout(feature_dropout)
        self.feature_noise = feature_noise
        self.center_clip = center_clip
        self.input_proj = (
            nn.Sequential(
                nn.Linear(backbone.out_dim, input_proj), nn.ReLU(), nn.Dropout(proj_dropout)
            )
            if input_proj
            else nn.Identity()
        )
        self.pooling = pooling
        # named `lstm` whatever the cell type, so checkpoint keys stay those of earlier versions
        self.lstm = RNNS[rnn](
            input_size=input_proj or backbone.out_dim,
            hidden_size=lstm_hidden,
            num_layers=lstm_layers,
            batch_first=True,
            dropout=dropout if lstm_layers > 1 else 0.0,
            bidirectional=bidirectional,
        )
        summary = lstm_hidden * (2 if bidirectional else 1)
        self.attention = nn.Linear(summary, 1) if pooling == "attention" else None
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(summary, num_classes))

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, 3, H, W) frames and (B,) true lengths -> (B, num_classes) logits."""
        return self.classify(self.encoder(frames, lengths), lengths)

    def stored_features(self, stored: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """A feature store's rows (B, T, D_store) -> the frame features `classify` takes: the
        same, or with tuned backbone blocks the stored prefix maps through those blocks."""
        if getattr(self.encoder, "trainable_blocks", 0):
            return self.encoder.from_prefix(stored, lengths)
        return stored

    def classify(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, D) frame features -> (B, num_classes) logits. `lengths` (B,) marks the real
        frames: padding never enters the norm's statistics, the RNN's reading of a clip or the
        pooling. Without it every frame is real (the path export traces, every shape dynamic).

        A one-way RNN runs over the padded batch: its output at a real frame does not depend on
        the frames after it, and pooling reads only real frames, so this equals packing (which
        a bidirectional one needs) and is faster. Training on the CPU, an LSTM's pass is
        `slr.models.recurrence.fused_lstm`: the same function with faster gradients."""
        b, t = features.shape[:2]
        if self.center_clip:
            features = features - clip_mean(features, lengths)
        if lengths is not None and self.lstm.bidirectional:
            return self.head(self.summary(*self.packed_rnn(features, lengths), lengths))
        if lengths is None or bool((lengths == t).all()):
            x = self.frame_inputs(features.flatten(0, 1))  # (B, T, D) -> (B*T, D')
            x = x.unflatten(0, (b, t))  # (B*T, D') -> (B, T, D')
        else:
            real = torch.arange(t, device=features.device) < lengths.to(features.device)[:, None]
            x = self.frame_inputs(features[real])  # (B, T, D)[real] -> (N real frames, D')
            x = x.new_zeros(b, t, x.shape[1]).masked_scatter_(real.unsqueeze(-1), x)  # (B, T, D')
        if self.training and recurrence.supports(self.lstm, x):
            out, state = recurrence.fused_lstm(self.lstm, x), None
        else:
            out, state = self.lstm(x)  # (B, T, H'), from a zero state
        return self.head(self.summary(out, state, lengths))

    def packed_rnn(self, features: torch.Tensor, lengths: torch.Tensor):
        """The RNN over only the real frames, packed: -> (B, T, H') outputs and final state."""
        t = features.shape[1]
        packed = pack_padded_sequence(
            features, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        # packed.data holds only the real frames, (sum of lengths, D)
        x = self.frame_inputs(packed.data)
        packed = PackedSequence(
            x, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices
        )
        out, state = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=t)  # (B, T, H')
        return out, state

    def frame_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) real frames' features -> (N, D') the RNN's inputs."""
        if self.training and len(x) == 1 and isinstance(self.feature_norm, nn.BatchNorm1d):
            self.feature_norm.eval()  # batch statistics of one frame do not exist: use running
            x = self.feature_norm(x)
            self.feature_norm.train()
        else:
            x = self.feature_norm(x)
        if self.training and self.feature_noise > 0:
            x = x + self.feature_noise * torch.randn_like(x)
        return self.input_proj(self.feature_dropout(x))

    def summary(self, out, state, lengths: torch.Tensor | None) -> torch.Tensor:
        """One vector per clip, (B, H') from the RNN's outputs `out` (B, T, H') and, for a
        bidirectional RNN's "last", its final `state`; `lengths` None = every frame real."""
        if self.pooling == "last" and self.lstm.bidirectional:
            h_n = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c); GRU: h
            # h_n: (layers * directions, B, H): the last layer's final states, both directions
            return torch.cat([h_n[-2], h_n[-1]], dim=1)  # (B, 2H)
        if self.pooling == "last":  # the last layer's output at each clip's last real frame
            if lengths is None:
                return out[:, -1]  # (B, T, H) -> (B, H)
            last = lengths.to(out.device) - 1
            return out[torch.arange(len(out), device=out.device), last]  # (B, T, H) -> (B, H)
        b, t = out.shape[:2]
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long, device=out.device)
        lengths = lengths.to(out.device)
        real = torch.arange(t, device=out.device) < lengths[:, None]  # (B, T)
        if self.pooling == "mean":
            weights = real.float() / lengths[:, None]  # (B, T)
        else:
            scores = self.attention(out).squeeze(-1).masked_fill(~real, float("-inf"))
            weights = scores.softmax(dim=1)  # (B, T), zero on padding
        return (weights.unsqueeze(-1) * out).sum(dim=1)  # (B, T, H') -> (B, H')


def clip_mean(features: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """(B, T, D) frame features -> (B, 1, D), each clip's mean over its real frames."""
    if lengths is None:
        return features.mean(dim=1, keepdim=True)
    t = features.shape[1]
    lengths = lengths.to(features.device)
    real = (torch.arange(t, device=features.device) < lengths[:, None]).unsqueeze(-1)  # (B, T, 1)
    total = features.masked_fill(~real, 0).sum(dim=1, keepdim=True)  # (B, 1, D)
    return total / lengths.clamp(min=1)[:, None, None]


def mean_over_views(logits: torch.Tensor, num_views: int) -> torch.Tensor:
    """(B*V, C) logits of V views per video, views adjacent -> (B, C) class probabilities: each
    view's softmax, averaged over the video's views (one view: its softmax)."""
    return logits.softmax(dim=-1).unflatten(0, (-1, num_views)).mean(dim=1)  # (B, V, C) -> (B, C)
