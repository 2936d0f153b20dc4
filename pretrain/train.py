"""The pretraining loop: one `accelerator.prepare`, AdamW, warm-up + cosine lr, EMA target, checkpoints, logs.

Order of one optimiser step: `grad_accumulation` micro-batches of forward + backward, gradient clipping,
optimiser and scheduler step, then the EMA update of the target network with the scheduled momentum.
Only the main process writes files; every process runs the same steps on its own stream of clips.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from torch import nn
from tqdm import tqdm

from pretrain.checkpoint import CHECKPOINT_FORMAT_VERSION, load_checkpoint, save_checkpoint
from pretrain.config import PretrainConfig, config_to_dict
from pretrain.data import build_train_loader, check_shards
from pretrain.ema import EMA, cosine_momentum
from pretrain.errors import CheckpointError, PretrainError
from pretrain.methods import build_method
from pretrain.online_probe import OnlineProbe
from pretrain.run_folder import (
    CHECKPOINT_DIR,
    INIT_CHECKPOINT,
    LAST_CHECKPOINT,
    finish_run_folder,
    locate_run_folder,
    open_run_folder,
    partial_folder,
    truncate_log,
    write_config,
)
from pretrain.schedule import WarmupCosine
from pretrain.seeding import capture_rng_state, restore_rng_state, seed_everything
from pretrain.tracking import MetricsTracker

logger = logging.getLogger(__name__)

# Sections that fix the model's shape and objective; a resumed run must not change them.
RESUME_FIXED_SECTIONS = ("model", "method")


@dataclass
class TrainState:
    """Progress of a run that checkpoints carry besides the weights."""

    step: int = 0
    wandb_id: str | None = None
    skipped_steps: int = 0
    # This process's stream positions, worker id -> position of the next clip that worker yields.
    data_positions: dict[int, int] = field(default_factory=dict)


def train(config: PretrainConfig, *, resume: bool = False) -> Path:
    """Pretrain the method that `config` describes and return the finished run folder."""
    accelerator = Accelerator(
        mixed_precision=config.optim.mixed_precision,
        gradient_accumulation_steps=config.optim.grad_accumulation,
    )
    urls = check_shards(config.data, config.method)
    resume_source = locate_run_folder(config.run.out_dir, resume)
    config_dict = config_to_dict(config)

    # Same seed on every process, so every replica starts from identical weights.
    seed_everything(config.run.seed)
    method = build_method(config)
    optimizer = build_optimizer(method, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, WarmupCosine(config.optim.warmup_steps, config.optim.total_steps, config.optim.min_lr_ratio)
    )
    state = TrainState()
    if resume:
        checkpoint = resume_source / CHECKPOINT_DIR / LAST_CHECKPOINT
        state = restore_training(
            checkpoint, config, method, optimizer, scheduler,
            rank=accelerator.process_index, world_size=accelerator.num_processes,
        )

    # The main process creates the folder (or moves a finished run back to its working name) only after every
    # check has passed. The other processes wait, so they never see it half made.
    accelerator.wait_for_everyone()
    folder = partial_folder(config.run.out_dir)
    checkpoint_dir = folder / CHECKPOINT_DIR
    if accelerator.is_main_process:
        open_run_folder(config.run.out_dir, resume)
        write_config(folder, config_dict)
        if resume:
            dropped = truncate_log(folder, state.step)
            if dropped:
                logger.info(
                    "dropped %d log.jsonl line(s) logged after the checkpoint at step %d", dropped, state.step
                )
            logger.info("resumed %s at step %d of %d", folder, state.step, config.optim.total_steps)
        else:
            save_checkpoint(checkpoint_dir / INIT_CHECKPOINT, checkpoint_payload(method, config_dict, step=0))
    accelerator.wait_for_everyone()

    # One prepare for model and optimiser. The scheduler stays outside because accelerate would step it
    # once per process, and total_steps counts optimiser steps. The loader stays outside because
    # each process already streams its own shards in its own order.
    model, optimizer = accelerator.prepare(method, optimizer)
    loader = build_train_loader(
        urls,
        config.data,
        batch_size=config.optim.batch_size,
        seed=config.run.seed,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
        start_positions=state.data_positions,
        pin_memory=accelerator.device.type == "cuda",
        method=config.method,
    )

    # Only the main process probes; the others wait for it at the next gradient all-reduce.
    probe = OnlineProbe(config) if config.probe.every > 0 and accelerator.is_main_process else None

    tracker = None
    if accelerator.is_main_process:
        tracker = MetricsTracker(
            folder,
            wandb_mode=config.run.wandb_mode,
            wandb_project=config.run.wandb_project,
            run_name=Path(config.run.out_dir).name,
            config=config_dict,
            wandb_id=state.wandb_id,
        )
        state.wandb_id = tracker.wandb_id

    try:
        run_loop(
            accelerator, model, optimizer, scheduler, loader, config, config_dict, state, folder, tracker, probe
        )
    finally:
        if tracker is not None:
            tracker.close()

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final = finish_run_folder(folder, config.run.out_dir)
        logger.info("run complete: %s", final)
    accelerator.wait_for_everyone()
    return Path(config.run.out_dir)


def run_loop(
    accelerator: Accelerator,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader: torch.utils.data.DataLoader,
    config: PretrainConfig,
    config_dict: dict[str, Any],
    state: TrainState,
    folder: Path,
    tracker: MetricsTracker | None,
    probe: OnlineProbe | None = None,
) -> None:
    """Run optimiser steps from `state.step` to `optim.total_steps`, logging and checkpointing on schedule."""
    optim = config.optim
    method = accelerator.unwrap_model(model)
    ema = EMA()
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    clips_per_step = optim.batch_size * optim.grad_accumulation * accelerator.num_processes
    batches = iter(loader)
    model.train()

    progress = tqdm(
        total=optim.total_steps, initial=state.step, desc="pretrain", unit="step",
        disable=not accelerator.is_main_process, dynamic_ncols=True,
    )
    window_start = time.perf_counter()
    window_steps = 0
    while state.step < optim.total_steps:
        # Forward and backward over the micro-batches of one optimiser step.
        step_logs: dict[str, float] = {}
        set_step = getattr(method, "set_step", None)
        if set_step is not None:
            set_step(state.step)
        for _ in range(optim.grad_accumulation):
            batch = next(batches)
            record_stream_position(state, batch, accelerator.process_index)
            # Every tensor of the batch goes to the method: the views, plus the local views of multi-crop.
            inputs = {
                name: value.to(accelerator.device, non_blocking=True)
                for name, value in batch.items()
                if isinstance(value, torch.Tensor)
            }
            with accelerator.accumulate(model):
                loss, logs = model(inputs)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    max_norm = optim.grad_clip if optim.grad_clip > 0 else math.inf
                    grad_norm = float(accelerator.clip_grad_norm_(parameters, max_norm))
                    if not math.isfinite(grad_norm) and accelerator.scaler is None:
                        # One overflow (seen with bf16 autocast on CPU) would turn every weight into NaN.
                        # Dropping the gradients makes the optimiser step below a no-op. With fp16 the
                        # gradient scaler skips such steps itself and lowers its scale.
                        optimizer.zero_grad(set_to_none=True)
                        state.skipped_steps += 1
                        logger.warning(
                            "step %d: gradient norm is %s, so the update was skipped (%d skipped so far)",
                            state.step + 1, grad_norm, state.skipped_steps,
                        )
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            for key, value in logs.items():
                step_logs[key] = step_logs.get(key, 0.0) + value / optim.grad_accumulation

        # Scheduler and target network move once per optimiser step.
        learning_rate = scheduler.get_last_lr()[0]
        scheduler.step()
        tau = cosine_momentum(state.step, optim.total_steps, config.method.tau_base)
        if getattr(method, "uses_target_network", False):
            ema.update(method.online, method.target, tau)
        state.step += 1
        window_steps += 1
        progress.update(1)
        if logger.isEnabledFor(logging.DEBUG):
            # Replicas must stay identical; comparing this line across ranks shows that they do.
            logger.debug(
                "rank %d step %d parameter checksum %r",
                accelerator.process_index, state.step, parameter_checksum(method),
            )

        probe_logs: dict[str, float] = {}
        if probe is not None and state.step % config.probe.every == 0:
            probe_logs["probe/knn_top1"] = probe.measure(method.encoder)
            progress.set_postfix(knn_top1=f"{probe_logs['probe/knn_top1']:.3f}")
            if tracker is not None and state.step % config.run.log_every != 0 and state.step != optim.total_steps:
                tracker.log({"step": state.step, **probe_logs})

        if state.step % config.run.log_every == 0 or state.step == optim.total_steps:
            elapsed = time.perf_counter() - window_start
            record = {
                "step": state.step,
                **mean_over_processes(accelerator, step_logs),
                "lr": learning_rate,
                "tau": tau,
                "grad_norm": grad_norm,
                "skipped_steps": state.skipped_steps,
                "samples_per_s": window_steps * clips_per_step / max(elapsed, 1e-9),
                **probe_logs,
            }
            if tracker is not None:
                tracker.log(record)
            postfix = {"loss": f"{record['loss']:.4f}", "embedding_std": f"{record['embedding_std']:.4f}"}
            if probe_logs:
                postfix["knn_top1"] = f"{probe_logs['probe/knn_top1']:.3f}"
            progress.set_postfix(**postfix)
            window_start = time.perf_counter()
            window_steps = 0

        if state.step % config.run.checkpoint_every == 0 or state.step == optim.total_steps:
            # Every process sends its generators and stream positions, so each one resumes exactly.
            rank_states = gather_object([capture_rank_state(state)])
            if accelerator.is_main_process:
                payload = checkpoint_payload(
                    method, config_dict, step=state.step, optimizer=optimizer, scheduler=scheduler, state=state,
                    rank_states=rank_states,
                )
                save_checkpoint(folder / CHECKPOINT_DIR / LAST_CHECKPOINT, payload)
            accelerator.wait_for_everyone()
    progress.close()


def record_stream_position(state: TrainState, batch: dict[str, Any], rank: int) -> None:
    """Record the stream position of the worker that made `batch`, and log the batch's keys at debug level."""
    if "position" not in batch:
        return
    worker = int(batch["worker"])
    state.data_positions[worker] = max(batch["position"]) + 1
    logger.debug(
        "rank %d step %d worker %d positions %s keys %s",
        rank, state.step + 1, worker, batch["position"], " ".join(batch["key"]),
    )


def parameter_checksum(module: nn.Module) -> float:
    """Return a float64 fingerprint of every parameter: sums weighted by position, so swaps change it too."""
    total = 0.0
    for index, parameter in enumerate(module.parameters()):
        values = parameter.detach().double().flatten()
        weights = torch.linspace(1.0, 2.0, values.numel(), dtype=torch.float64, device=values.device)
        total += (index + 1) * float((values * weights).sum())
    return total


def capture_rank_state(state: TrainState) -> dict[str, Any]:
    """Return what one process needs to resume exactly: its generators and its workers' stream positions."""
    return {
        "rng": capture_rng_state(),
        "data_positions": {str(worker): int(position) for worker, position in state.data_positions.items()},
    }


def build_optimizer(method: nn.Module, config: PretrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices and kernels only; biases and norm scales are not decayed."""
    decayed = []
    not_decayed = []
    for parameter in method.parameters():
        if not parameter.requires_grad:
            continue
        (decayed if parameter.ndim >= 2 else not_decayed).append(parameter)
    groups = [
        {"params": decayed, "weight_decay": config.optim.weight_decay},
        {"params": not_decayed, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.optim.lr)


def mean_over_processes(accelerator: Accelerator, values: dict[str, float]) -> dict[str, float]:
    """Average scalar logs over all processes (every process must call this at the same step)."""
    if accelerator.num_processes == 1:
        return dict(values)
    names = sorted(values)
    stacked = torch.tensor([values[name] for name in names], device=accelerator.device, dtype=torch.float64)
    reduced = accelerator.reduce(stacked, reduction="mean")
    return {name: float(value) for name, value in zip(names, reduced.tolist())}


def checkpoint_payload(
    method: nn.Module,
    config_dict: dict[str, Any],
    *,
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    state: TrainState | None = None,
    rank_states: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Assemble a checkpoint of tensors and built-ins; the optimiser part is left out of init.pt.

    `rank_states` contains `capture_rank_state` of every process, in rank order, and `rng` repeats rank 0's.
    """
    payload: dict[str, Any] = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "method": method.name,
        "step": step,
        "seed": config_dict["run"]["seed"],
        "config": config_dict,
        "model": method.state_dict(),
    }
    if optimizer is not None and scheduler is not None and state is not None:
        payload["optimizer"] = optimizer.state_dict()
        payload["scheduler"] = scheduler.state_dict()
        rank_states = rank_states if rank_states is not None else [capture_rank_state(state)]
        payload["rng"] = rank_states[0]["rng"]
        payload["ranks"] = rank_states
        payload["streams"] = {"num_workers": config_dict["data"]["num_workers"], "processes": len(rank_states)}
        payload["wandb_id"] = state.wandb_id
        payload["skipped_steps"] = state.skipped_steps
    return payload


def restore_training(
    path: Path,
    config: PretrainConfig,
    method: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    rank: int = 0,
    world_size: int = 1,
) -> TrainState:
    """Load model, target, optimiser, scheduler, step, generator state and stream positions from a checkpoint.

    With the same number of processes and data workers as the saved run, every process gets its own
    generators and stream positions back and the run continues exactly as if never stopped. Otherwise
    the streams restart at the seed and a warning states that the data order differs from an uninterrupted run.
    """
    payload = load_checkpoint(path, expected_method=config.method.name)
    if "optimizer" not in payload:
        raise CheckpointError(f"checkpoint {path} contains no optimiser state, so training cannot resume from it")

    saved_config = payload["config"]
    current_config = config_to_dict(config)
    changed = [
        f"{section}.{key}"
        for section in RESUME_FIXED_SECTIONS
        for key in current_config[section]
        if saved_config.get(section, {}).get(key) != current_config[section][key]
    ]
    if saved_config["data"]["modality"] != current_config["data"]["modality"]:
        changed.append("data.modality")
    if changed:
        raise PretrainError(
            f"cannot resume {path}: the config changes {', '.join(changed)}; resume with the run's own config.yaml"
        )
    if payload["step"] >= config.optim.total_steps:
        raise PretrainError(
            f"cannot resume {path}: it is already at step {payload['step']} of optim.total_steps="
            f"{config.optim.total_steps}; raise optim.total_steps to train further"
        )

    try:
        method.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
    except (RuntimeError, KeyError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} does not match this model: {str(error).splitlines()[0]}") from error

    # The schedule's settings come from the current config, so a run can be extended to more steps.
    scheduler.lr_lambdas[0] = WarmupCosine(
        config.optim.warmup_steps, config.optim.total_steps, config.optim.min_lr_ratio
    )
    rank_state = select_rank_state(path, payload, config, rank=rank, world_size=world_size)
    restore_rng_state(rank_state["rng"])
    return TrainState(
        step=int(payload["step"]),
        wandb_id=payload.get("wandb_id"),
        skipped_steps=int(payload.get("skipped_steps", 0)),
        data_positions={int(worker): int(position) for worker, position in rank_state["data_positions"].items()},
    )


def select_rank_state(
    path: Path, payload: dict[str, Any], config: PretrainConfig, *, rank: int, world_size: int
) -> dict[str, Any]:
    """Return this process's saved generators and stream positions, or rank 0's generators and fresh streams."""
    ranks = payload.get("ranks")
    saved = payload.get("streams", {})
    if (
        isinstance(ranks, list)
        and len(ranks) == world_size
        and saved.get("num_workers") == config.data.num_workers
    ):
        return ranks[rank]
    if rank == 0:
        logger.warning(
            "checkpoint %s was saved by %s process(es) with data.num_workers=%s, this run has %d and %d: the "
            "data streams restart from the seed, so batches differ from an uninterrupted run",
            path, len(ranks) if isinstance(ranks, list) else "an unknown number of", saved.get("num_workers", "?"),
            world_size, config.data.num_workers,
        )
    return {"rng": payload["rng"], "data_positions": {}}
