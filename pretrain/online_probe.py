"""The online kNN probe that the trainer runs every `probe.every` steps on two small labelled shard sets.

Both shard sets are decoded once, when training starts, and kept in memory, so each probe costs only the
forward passes. The encoder runs in eval mode with the deterministic inputs of `latentwatch embed`, and
uses no random generator, so a probe never changes the course of training.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from pretrain.config import PretrainConfig
from pretrain.embed import ClipEmbedder
from pretrain.encoders import AVEncoder
from pretrain.errors import PretrainError
from pretrain.knn_probe import clip_probe_label, knn_top1
from shards.read import iter_clips

logger = logging.getLogger(__name__)

# Clips per forward pass of the probe.
PROBE_BATCH = 16


class OnlineProbe:
    """Labelled bank and query clips, and `measure(encoder)` returning the kNN vote's top-1 accuracy."""

    def __init__(self, config: PretrainConfig) -> None:
        self.config = config
        self.bank = self._load(config.probe.bank_shards)
        self.queries = self._load(config.probe.query_shards)
        logger.info(
            "kNN probe every %d steps: %d bank and %d query clips, %d classes",
            config.probe.every, len(self.bank), len(self.queries),
            len({label for _, label in self.bank + self.queries}),
        )

    def _load(self, shards: str) -> list[tuple[Any, str]]:
        needs_audio = self.config.data.uses_audio
        clips = []
        for clip in iter_clips(shards):
            if needs_audio and clip.audio is None:
                continue  # the encoder cannot embed a clip without audio
            clips.append((clip, clip_probe_label(clip.meta)))
        if not clips:
            raise PretrainError(f"probe shard set {shards} has no clip the {self.config.data.modality} encoder can use")
        return clips

    @torch.no_grad()
    def measure(self, encoder: AVEncoder) -> float:
        """Return the top-1 accuracy of the weighted kNN vote with the encoder's current joint embeddings."""
        was_training = encoder.training
        device = next(encoder.parameters()).device
        embedder = ClipEmbedder(encoder, self.config, "joint", device)
        encoder.eval()
        try:
            bank = self._embed(embedder, self.bank)
            queries = self._embed(embedder, self.queries)
        finally:
            encoder.train(was_training)
        probe = self.config.probe
        return knn_top1(
            bank, [label for _, label in self.bank], queries, [label for _, label in self.queries],
            k=probe.k, temperature=probe.temperature,
        )

    def _embed(self, embedder: ClipEmbedder, clips: list[tuple[Any, str]]) -> torch.Tensor:
        rows = []
        pending: list[Any] = []
        for clip, _ in clips:
            # Clips of one batch must share their input shape, as in `latentwatch embed`.
            if pending and (len(pending) == PROBE_BATCH or embedder.input_shape(clip) != embedder.input_shape(pending[0])):
                rows.append(torch.from_numpy(embedder.embed(pending)))
                pending = []
            pending.append(clip)
        rows.append(torch.from_numpy(embedder.embed(pending)))
        return torch.cat(rows)  # (N, D)
