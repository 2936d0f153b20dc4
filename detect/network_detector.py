"""Base class of the detectors built on a small torch network: feature scaling, device choice, weights files.

IAE and Clear & Concise both standardise each feature with statistics of the normal rows, run on the GPU
when one is available (`device="auto"`), and save their network as safetensors, which cannot run code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from detect.base import Detector
from detect.errors import DetectInputError

WEIGHTS_FILE = "network.safetensors"


class NetworkDetector(Detector):
    """A detector whose fitted state is a torch network (`model_`) plus per-feature mean and std."""

    device: str

    def _new_network(self) -> nn.Module:
        """Return an untrained network of the detector's settings and fitted dimension."""
        raise NotImplementedError

    def _fit_feature_scaling(self, rows: np.ndarray) -> None:
        """Set `feature_mean_` and `feature_std_` from normal rows (..., D); a constant feature keeps scale 1."""
        flat = rows.reshape(-1, rows.shape[-1]).astype(np.float64)  # (rows, D)
        self.feature_mean_ = flat.mean(axis=0).astype(np.float32)
        std = flat.std(axis=0)
        self.feature_std_ = np.where(std > 1e-8, std, 1.0).astype(np.float32)

    def _standardise(self, rows: np.ndarray, device: torch.device) -> torch.Tensor:
        standardised = (np.asarray(rows, dtype=np.float32) - self.feature_mean_) / self.feature_std_
        return torch.as_tensor(standardised, device=device)  # same shape as rows

    def _torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def _write_files(self, folder: Path) -> None:
        state = {name: value.detach().cpu().contiguous() for name, value in self.model_.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE))

    def _read_files(self, folder: Path) -> None:
        path = folder / WEIGHTS_FILE
        if not path.is_file():
            raise DetectInputError(f"detector folder {folder} is missing {WEIGHTS_FILE}")
        self.model_ = self._new_network()
        try:
            self.model_.load_state_dict(load_file(str(path)))
        except (RuntimeError, OSError) as error:
            raise DetectInputError(f"cannot load the network weights {path}: {error}") from None
        self.model_.to(self._torch_device()).eval()

    def _restore(self) -> None:
        self.feature_mean_ = np.asarray(self.feature_mean_, dtype=np.float32)
        self.feature_std_ = np.asarray(self.feature_std_, dtype=np.float32)
        if self.feature_mean_.shape != (self.dimension_,) or self.feature_std_.shape != (self.dimension_,):
            raise DetectInputError(
                f"feature_mean/feature_std have shapes {self.feature_mean_.shape}/{self.feature_std_.shape} "
                f"but the detector's dimension is {self.dimension_}"
            )
