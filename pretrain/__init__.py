"""Representation layer: audio-visual encoders, self-supervised methods (BYOL), the trainer and `embed`."""
