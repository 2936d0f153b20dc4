"""Clear & Concise (CnC): an autoencoder that learns how many code features each input needs.

An encoder e maps an input x to a code z, a codelength estimator m turns z into a mask in [0, 1] per code
feature, and a decoder d reconstructs x from the masked code. Training keeps reconstructions clear
(L_clear = ||d(z * mask) - x||^2) while the code stays concise (L_concise = sum of the mask), so normal
inputs learn short codes. An anomalous input needs a longer code or reconstructs badly: both are scores.
Method: section 4.4 of "Machine Learning Models for Multimodal Detection of Anomalous Behaviors" (2021).

The estimator is a stack of causal 1-D convolutions over the code's feature axis. The mask of feature i
depends on features 0..i only, so a later feature is kept only when the earlier ones do not suffice. The mask is binarised by a threshold drawn uniformly per sample, with the
straight-through trick m = b(m_hat) + m_hat - sg(m_hat) so gradients reach the estimator.

The balance between clarity and concision follows a target reconstruction error theta_clear that decays
exponentially: lambda_concise = (theta_clear - sg(L_clear)) / theta_clear is positive (shorten codes) while
reconstructions are clearer than the target and negative (lengthen codes) otherwise. Its decay is fitted
automatically: a warm-up phase trains the plain autoencoder without the mask, and its per-epoch losses are
fitted by theta_clear(t) = floor + exp(intercept - rate * t) over epochs t. The masked phase replays that
curve from t = 0, so after t epochs of masked training the reconstructions must be as clear as the plain
autoencoder's were after t epochs; the warmed-up model starts ahead of the curve, which is what lets the
codes shrink early on. For each candidate floor below the smallest warm-up loss, a least-squares line through
log(loss - floor) gives intercept and rate; the candidate whose curve fits the losses best wins. The floor
keeps the target near what the plain autoencoder reaches: a pure exponential would decay toward 0, turn
lambda_concise negative for good and let every code grow to full length.

NOTE: the codelength score alone is weaker than the reconstruction error in every check so far: near
chance on the smooth synthetic sequences of the tests, and mean one-class AUROC 0.77 (raw pixels) and 0.91
(PCA to 32 dimensions) against 0.98 and 0.996 for the combined score on scikit-learn's digits
(tools/digits_one_class.py, seed 0). The method's source reports codelength alone at 0.923 AUROC on UCSD
Ped2 pixels, which has not been reproduced here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from detect.network_detector import NetworkDetector
from detect.errors import DetectInputError
from detect.parameter_checks import (
    check_choice,
    check_integer,
    check_non_negative_number,
    check_positive_integers,
    check_positive_number,
)

logger = logging.getLogger(__name__)

SCORE_NAMES = ("codelength", "reconstruction", "combined")

# Evenly spaced mask thresholds used at scoring time in place of the uniform random draw of training,
# so scores are deterministic and approximate the expectation over that draw.
_SCORE_THRESHOLDS = 16
_SCORE_BATCH = 4096
# lambda_concise is clipped below at this value: as theta_clear decays toward 0 the raw value tends to minus
# infinity, and one hard batch would otherwise swamp the reconstruction terms.
_MIN_LAMBDA_CONCISE = -1.0


class CausalFeatureConvolutions(nn.Module):
    """Codelength estimator: causal 1-D convolutions over the code features, giving a mask in [0, 1].

    Each convolution is padded on the left only, so output i depends on inputs 0..i only. Dilations double
    per layer until the receptive field covers the whole code, so the last feature's mask can depend on
    every feature.
    """

    def __init__(self, code_dim: int, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        dilations = [1]
        while 1 + (kernel_size - 1) * sum(dilations) < code_dim:
            dilations.append(2 * dilations[-1])
        widths = [1] + [channels] * len(dilations) + [1]
        self.paddings = [(kernel_size - 1) * dilation for dilation in dilations] + [0]
        self.convolutions = nn.ModuleList(
            [nn.Conv1d(widths[i], widths[i + 1], kernel_size, dilation=dilation)
             for i, dilation in enumerate(dilations)]
            + [nn.Conv1d(channels, 1, 1)]  # a per-feature read-out, causal by construction
        )

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        hidden = codes[:, None, :]  # (B, 1, K)
        for index, (convolution, padding) in enumerate(zip(self.convolutions, self.paddings)):
            hidden = convolution(nn.functional.pad(hidden, (padding, 0)))  # (B, channels, K)
            if index < len(self.convolutions) - 1:
                hidden = nn.functional.gelu(hidden)
        return torch.sigmoid(hidden[:, 0, :])  # (B, K)


class ClearConciseNetwork(nn.Module):
    """Encoder (D -> hidden -> K), decoder (K -> hidden -> D) and the codelength estimator over K features."""

    def __init__(self, dimension: int, hidden_dim: int, code_dim: int, estimator_channels: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(dimension, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, code_dim)
        )
        self.decoder = nn.Sequential(
            nn.Linear(code_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, dimension)
        )
        self.estimator = CausalFeatureConvolutions(code_dim, estimator_channels)


def binary_mask(soft_mask: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Eq 4.18: 1 where the soft mask (B, K) exceeds the per-sample threshold (B, 1), straight-through."""
    hard = (soft_mask > thresholds).to(soft_mask.dtype)  # (B, K)
    return hard + soft_mask - soft_mask.detach()


def fit_exponential_decay(losses: Sequence[float]) -> tuple[float, float, float]:
    """Fit loss_t = floor + exp(intercept - rate * t) to the losses of epochs t = 1..T.

    Returns (floor, intercept, rate). Each of 64 floors evenly spaced in [0, min(loss)) gets a least-squares
    line through log(loss_t - floor). The floor whose curve has the smallest squared error in loss units
    wins. The rate is clipped at 0, so a warm-up curve that rises gives a constant target.
    """
    values = np.maximum(np.asarray(losses, dtype=np.float64), 1e-12)
    epochs = np.arange(1, len(values) + 1, dtype=np.float64)
    if len(values) < 3:
        return 0.0, float(np.log(values[-1])), 0.0

    best: tuple[float, float, float, float] | None = None  # (error, floor, intercept, rate)
    for floor in np.linspace(0.0, values.min(), 64, endpoint=False):
        slope, intercept = np.polyfit(epochs, np.log(values - floor), deg=1)
        rate = max(-slope, 0.0)
        error = float(((floor + np.exp(intercept - rate * epochs) - values) ** 2).sum())
        if best is None or error < best[0]:
            best = (error, float(floor), float(intercept), float(rate))
    return best[1], best[2], best[3]


def theta_clear(floor: float, intercept: float, rate: float, epoch: float) -> float:
    """Compute the target reconstruction error theta_clear after `epoch` epochs of the fitted curve."""
    return floor + math.exp(intercept - rate * epoch)


class CnCDetector(NetworkDetector):
    """Clear & Concise on rows (N, D); `score` returns the score named by `score_name`.

    Scores, all higher = more anomalous, averaged over 16 evenly spaced mask thresholds:
    - `codelength`: number of code features the binary mask keeps;
    - `reconstruction`: mean squared error per input feature (on standardised inputs) of the masked
      reconstruction;
    - `combined`: the sum of both, each first standardised with the mean and standard deviation of the
      normal training rows' scores. Training scores are in-sample.
    """

    name = "clear_and_concise"
    array_names = ("feature_mean", "feature_std")

    def __init__(
        self,
        score_name: str = "combined",
        hidden_dim: int = 128,
        code_dim: int = 16,
        estimator_channels: int = 16,
        lambda_skip: float = 1.0,
        learning_rate: float = 1e-3,
        batch_size: int = 32,
        warmup_epochs: int = 20,
        epochs: int = 60,
        seed: int = 0,
        device: str = "auto",
        contamination: float = 0.1,
    ) -> None:
        super().__init__(contamination=contamination)
        check_choice("score_name", score_name, SCORE_NAMES)
        check_positive_integers(hidden_dim=hidden_dim, code_dim=code_dim, estimator_channels=estimator_channels,
                                batch_size=batch_size, warmup_epochs=warmup_epochs, epochs=epochs)
        check_non_negative_number("lambda_skip", lambda_skip)
        check_positive_number("learning_rate", learning_rate)
        check_integer("seed", seed)
        self.score_name = score_name
        self.hidden_dim = hidden_dim
        self.code_dim = code_dim
        self.estimator_channels = estimator_channels
        self.lambda_skip = float(lambda_skip)
        self.learning_rate = float(learning_rate)
        self.batch_size = batch_size
        self.warmup_epochs = warmup_epochs
        self.epochs = epochs
        self.seed = seed
        self.device = device

    def settings(self) -> dict[str, Any]:
        return {
            "score_name": self.score_name,
            "hidden_dim": self.hidden_dim,
            "code_dim": self.code_dim,
            "estimator_channels": self.estimator_channels,
            "lambda_skip": self.lambda_skip,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "warmup_epochs": self.warmup_epochs,
            "epochs": self.epochs,
            "seed": self.seed,
            "device": self.device,
            "contamination": self.contamination,
        }

    def _fitted_scalars(self) -> dict[str, Any]:
        return {
            "theta_floor_": self.theta_floor_,
            "theta_intercept_": self.theta_intercept_,
            "theta_decay_": self.theta_decay_,
            "warmup_loss_history_": self.warmup_loss_history_,
            "clear_loss_history_": self.clear_loss_history_,
            "codelength_history_": self.codelength_history_,
            "score_mean_": self.score_mean_,
            "score_std_": self.score_std_,
        }

    # ---- fitting

    def _fit(self, vectors: np.ndarray) -> np.ndarray:
        if vectors.shape[0] < 2:
            raise DetectInputError(f"the cnc detector needs at least 2 normal rows, got {vectors.shape[0]}")
        self._fit_feature_scaling(vectors)

        device = self._torch_device()
        standardised = self._standardise(vectors, device)  # (N, D)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.model_ = self._new_network()
        self.model_.to(device)
        self._train(standardised, device)

        # Standardisation statistics of the normal scores make the two scores addable.
        raw = self._raw_scores(standardised)
        if not all(np.isfinite(values).all() for values in raw.values()):
            raise DetectInputError("CnC training diverged (non-finite scores); lower learning_rate")
        self.score_mean_ = {name: float(values.mean()) for name, values in raw.items()}
        self.score_std_ = {name: _score_scale(name, values) for name, values in raw.items()}
        return self._with_combined(raw)[self.score_name]

    def _train(self, rows: torch.Tensor, device: torch.device) -> None:
        """Warm up the plain autoencoder, fit theta_clear's decay to its losses, then train with the mask."""
        generator = torch.Generator(device=device).manual_seed(self.seed)
        optimizer = torch.optim.Adam(self.model_.parameters(), lr=self.learning_rate)
        self.model_.train()
        self.warmup_loss_history_: list[float] = []
        self.clear_loss_history_: list[float] = []
        self.codelength_history_: list[float] = []
        steps_per_epoch = math.ceil(rows.shape[0] / self.batch_size)

        # disable=None shows the progress bars on a terminal only, so logs of batch runs stay readable.
        warmup = tqdm(
            range(self.warmup_epochs), desc="CnC warm-up", unit="epoch", leave=False, disable=None
        )
        for _ in warmup:
            total = 0.0
            for batch in self._batches(rows, generator):
                reconstructed = self.model_.decoder(self.model_.encoder(batch))  # (B, D)
                loss = self._reconstruction_error(reconstructed, batch).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * batch.shape[0]
            self.warmup_loss_history_.append(total / rows.shape[0])
        self.theta_floor_, self.theta_intercept_, self.theta_decay_ = fit_exponential_decay(
            self.warmup_loss_history_
        )
        logger.info(
            "CnC theta_clear(t) = %.4g + %.4g * exp(-%.4g t), fitted to %d warm-up epochs",
            self.theta_floor_, math.exp(self.theta_intercept_), self.theta_decay_, self.warmup_epochs,
        )

        masked = tqdm(range(self.epochs), desc="CnC training", unit="epoch", leave=False, disable=None)
        for epoch in masked:
            clear_total, codelength_total = 0.0, 0.0
            for step, batch in enumerate(self._batches(rows, generator)):
                elapsed = epoch + (step + 1) / steps_per_epoch  # epochs of masked training
                target = theta_clear(self.theta_floor_, self.theta_intercept_, self.theta_decay_, elapsed)
                loss, clear, codelength = self._masked_loss(batch, target, generator)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                clear_total += float(clear) * batch.shape[0]
                codelength_total += float(codelength) * batch.shape[0]
            self.clear_loss_history_.append(clear_total / rows.shape[0])
            self.codelength_history_.append(codelength_total / rows.shape[0])
        self.model_.eval()

    def _masked_loss(
        self, batch: torch.Tensor, target: float, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return the total loss, L_clear and the mean binary codelength of one batch (B, D)."""
        codes = self.model_.encoder(batch)  # (B, K)
        soft_mask = self.model_.estimator(codes)  # (B, K)
        thresholds = torch.rand((batch.shape[0], 1), generator=generator, device=batch.device)  # (B, 1)
        mask = binary_mask(soft_mask, thresholds)  # (B, K)

        clear = self._reconstruction_error(self.model_.decoder(codes * mask), batch).mean()
        concise = soft_mask.sum(dim=1).mean()
        skip = self._reconstruction_error(self.model_.decoder(codes), batch).mean()
        lambda_concise = max((target - float(clear.detach())) / target, _MIN_LAMBDA_CONCISE)
        loss = clear + lambda_concise * concise + self.lambda_skip * skip
        return loss, clear.detach(), mask.detach().sum(dim=1).mean()

    def _batches(self, rows: torch.Tensor, generator: torch.Generator):
        permutation = torch.randperm(rows.shape[0], generator=generator, device=rows.device)
        for start in range(0, rows.shape[0], self.batch_size):
            yield rows[permutation[start : start + self.batch_size]]  # (B, D)

    @staticmethod
    def _reconstruction_error(reconstructed: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return ((reconstructed - rows) ** 2).mean(dim=1)  # (B,)

    # ---- scoring

    def _score(self, vectors: np.ndarray, keys: Sequence[str] | None) -> np.ndarray:
        return self.score_all(vectors)[self.score_name]

    def score_all(self, vectors: np.ndarray) -> dict[str, np.ndarray]:
        """Return every score (see the class docstring) for rows (M, D), each an array (M,)."""
        self._check_fitted()
        rows = self._check_vectors(vectors, expected_dimension=self.dimension_)
        return self._with_combined(self._raw_scores(self._standardise(rows, self._torch_device())))

    def _raw_scores(self, rows: torch.Tensor) -> dict[str, np.ndarray]:
        steps = torch.arange(_SCORE_THRESHOLDS, device=rows.device, dtype=rows.dtype)
        thresholds = (steps + 0.5) / _SCORE_THRESHOLDS  # (T,)
        codelengths, errors = [], []
        self.model_.eval()
        with torch.no_grad():
            for start in range(0, rows.shape[0], _SCORE_BATCH):
                batch = rows[start : start + _SCORE_BATCH]  # (B, D)
                codes = self.model_.encoder(batch)  # (B, K)
                soft_mask = self.model_.estimator(codes)  # (B, K)
                masks = (soft_mask[:, None, :] > thresholds[None, :, None]).to(codes.dtype)  # (B, T, K)
                reconstructed = self.model_.decoder(codes[:, None, :] * masks)  # (B, T, D)
                squared_error = (reconstructed - batch[:, None, :]) ** 2  # (B, T, D)
                errors.append(squared_error.mean(dim=2).mean(dim=1).double().cpu())
                codelengths.append(masks.sum(dim=2).mean(dim=1).double().cpu())
        return {"codelength": torch.cat(codelengths).numpy(), "reconstruction": torch.cat(errors).numpy()}

    def _with_combined(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        standardised = [(raw[name] - self.score_mean_[name]) / self.score_std_[name] for name in raw]
        return {**raw, "combined": standardised[0] + standardised[1]}

    # ---- state

    def _new_network(self) -> ClearConciseNetwork:
        return ClearConciseNetwork(self.dimension_, self.hidden_dim, self.code_dim, self.estimator_channels)

    def _restore(self) -> None:
        super()._restore()
        stored = (getattr(self, "score_mean_", None), getattr(self, "score_std_", None))
        expected = {"codelength", "reconstruction"}
        if not all(isinstance(value, dict) and set(value) == expected for value in stored):
            raise DetectInputError("detector.json lacks the cnc score statistics score_mean_ and score_std_")


# The smallest unit each score is standardised with. The mask keeps whole code features, so a codelength
# that does not vary on normal data (every normal clip keeps exactly 9 features, say) is measured in
# features; dividing by its near-zero spread would let a one-feature change swamp the reconstruction term.
CODELENGTH_MIN_SCALE = 1.0
# A reconstruction error is a mean of squares; its floor is relative to its own size.
RECONSTRUCTION_MIN_RELATIVE_SCALE = 1e-3


def _score_scale(name: str, values: np.ndarray) -> float:
    """Return the standard deviation that standardises score `name` on the normal rows, never below its floor."""
    spread = float(values.std())
    if name == "codelength":
        return max(spread, CODELENGTH_MIN_SCALE)
    return max(spread, RECONSTRUCTION_MIN_RELATIVE_SCALE * abs(float(values.mean())), 1e-12)
