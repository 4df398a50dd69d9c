"""slr's network as Keras users build it: `TimeDistributed(MobileNetV2) -> LSTM -> Dense`.

Works with Keras 2 (tf-keras, selected by TF_USE_LEGACY_KERAS=1) and Keras 3 alike; the caller
passes the `keras` module it imported, so this file imports no framework itself."""

from __future__ import annotations

from types import ModuleType
from typing import Any

FEATURE_DIM = 1280  # MobileNetV2's pooled features, as in slr.models.encoder
FOLDS = ("time_distributed", "reshape")


def build_classifier(
    keras: ModuleType,
    *,
    num_classes: int,
    frames: int,
    image_size: int | None,
    lstm_hidden: int = 512,
    lstm_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.3,
    feature_dropout: float = 0.1,
    feature_norm: bool = True,
    fold: str = "time_distributed",
) -> Any:
    """The Keras twin of `SignClassifier`: frames (B, T, S, S, 3) in [-1, 1] -> (B, classes)
    logits, with a frozen random-init MobileNetV2 (average-pooled) on every frame. With
    image_size=None the input is cached features (B, T, 1280) and the model is the LSTM and head.

    Args:
        fold: "time_distributed" wraps the backbone in TimeDistributed (Keras 2 folds time into
            the batch inside it, Keras 3 calls the backbone once per frame); "reshape" folds time
            into the batch explicitly around the backbone, as slr's FrameEncoder does.
    """
    if fold not in FOLDS:
        raise ValueError(f"fold={fold!r}: expected one of {FOLDS}")
    layers = keras.layers
    if image_size is None:
        inputs = keras.Input((frames, FEATURE_DIM))
        x = inputs
    else:
        s = image_size
        inputs = keras.Input((frames, s, s, 3))
        base = keras.applications.MobileNetV2(
            input_shape=(s, s, 3), include_top=False, weights=None, pooling="avg"
        )
        base.trainable = False  # frozen: no gradients, and its BatchNorm in inference mode
        if fold == "time_distributed":
            x = layers.TimeDistributed(base)(inputs)  # (B, T, S, S, 3) -> (B, T, 1280)
        else:
            # Keras 3 has keras.ops; Keras 2 has the same reshape in keras.backend
            reshape = keras.ops.reshape if hasattr(keras, "ops") else keras.backend.reshape
            x = layers.Lambda(lambda v: reshape(v, (-1, s, s, 3)))(inputs)  # -> (B*T, S, S, 3)
            x = base(x)  # (B*T, S, S, 3) -> (B*T, 1280)
            x = layers.Lambda(lambda v: reshape(v, (-1, frames, FEATURE_DIM)))(x)  # (B, T, 1280)
    if feature_norm:
        x = layers.BatchNormalization()(x)  # per feature over B and T, as slr's BatchNorm1d
    x = layers.Dropout(feature_dropout)(x)
    for i in range(lstm_layers):
        lstm = layers.LSTM(lstm_hidden, return_sequences=i < lstm_layers - 1)
        x = (layers.Bidirectional(lstm) if bidirectional else lstm)(x)
        if i < lstm_layers - 1:
            x = layers.Dropout(dropout)(x)  # between layers, as torch's LSTM(dropout=...)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes)(x)  # (B, H) -> (B, classes) logits
    return keras.Model(inputs, outputs)


def compile_classifier(
    keras: ModuleType, model: Any, lr: float, weight_decay: float, jit_compile: bool | None = None
) -> Any:
    """Compile as a Keras user would: AdamW on the trainable weights, cross-entropy on logits,
    everything else at its default unless `jit_compile` (XLA) is given."""
    extra = {} if jit_compile is None else {"jit_compile": jit_compile}
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=lr, weight_decay=weight_decay),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        **extra,
    )
    return model
