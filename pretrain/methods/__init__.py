"""Self-supervised methods, registered by the name used in `method.name` and stored in checkpoints.

A method is an `nn.Module` with `name`, `uses_target_network`, a `from_config(config)` class method, an
`encoder` property (the online `AVEncoder`) and `forward(batch) -> (loss, logs)`. Methods with a target
network expose `online` and `target` modules of identical structure for the EMA. A method whose forward
depends on the training step (a schedule) defines `set_step(step)`, which the trainer calls before each
optimiser step. A new method is one file here and one line in `METHODS`.
"""

from __future__ import annotations

from torch import nn

from pretrain.config import PretrainConfig
from pretrain.methods.audio_shift import AudioShift
from pretrain.methods.byol import BYOL
from pretrain.methods.dino import DINO

METHODS: dict[str, type[nn.Module]] = {
    "byol": BYOL,
    "dino": DINO,
    "audio_shift": AudioShift,
}


def build_method(config: PretrainConfig) -> nn.Module:
    """Build the untrained method (encoder and heads) that `config` describes."""
    return METHODS[config.method.name].from_config(config)
