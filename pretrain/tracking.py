"""Training metrics: one JSON line per logged step in log.jsonl, mirrored to Weights & Biases.

wandb is imported only when its mode is not 'disabled', so a disabled run never touches it. In offline mode
the wandb run lives in the run folder's `wandb/` and can be synced later with `wandb sync`.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from pathlib import Path
from typing import Any

from pretrain.run_folder import LOG_FILE

logger = logging.getLogger(__name__)


class MetricsTracker:
    """Append metrics to `FOLDER/log.jsonl` and, unless disabled, to a wandb run under `FOLDER/wandb`."""

    def __init__(
        self,
        folder: Path,
        *,
        wandb_mode: str,
        wandb_project: str,
        run_name: str,
        config: dict[str, Any],
        wandb_id: str | None = None,
    ) -> None:
        self.log_path = folder / LOG_FILE
        self.wandb_run = None
        self.wandb_id = wandb_id
        if wandb_mode == "disabled":
            return

        import wandb

        (folder / "wandb").mkdir(exist_ok=True)
        # wandb accepts any short lowercase alphanumeric id; keeping it lets a resumed run continue the same run.
        self.wandb_id = wandb_id or uuid.uuid4().hex[:8]
        self.wandb_run = wandb.init(
            project=wandb_project,
            name=run_name,
            id=self.wandb_id,
            resume="allow",
            mode=wandb_mode,
            dir=str(folder),
            config=config,
        )
        logger.info("wandb run %s in %s mode under %s", self.wandb_id, wandb_mode, folder / "wandb")

    def log(self, record: dict[str, Any]) -> None:
        """Write one record (which must contain `step`) as a JSON line and to wandb."""
        cleaned = {key: _json_number(value) for key, value in record.items()}
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(cleaned) + "\n")
        if self.wandb_run is not None:
            self.wandb_run.log({key: value for key, value in record.items() if key != "step"}, step=record["step"])

    def close(self) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None


def _json_number(value: Any) -> Any:
    # JSON has no NaN or infinity; null keeps log.jsonl readable by strict parsers.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
