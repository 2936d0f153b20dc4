"""Pretrain an audio-visual encoder without labels (BYOL) on a shard set.

The config is a YAML file plus `section.key=value` overrides; `--help` lists every key. Launch commands:

    # CPU, one process (also works with plain python):
    python pretrain.py --config configs/pretrain/byol_tiny.yaml data.shards=shards/train run.out_dir=runs/tiny
    accelerate launch --cpu pretrain.py --config configs/pretrain/byol_tiny.yaml data.shards=shards/train

    # CPU, two processes (`--cpu --num_processes 2` would start only one):
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 pretrain.py \\
        --config configs/pretrain/byol_tiny.yaml data.shards=shards/train

    # one GPU:
    accelerate launch --num_processes 1 pretrain.py --config configs/pretrain/byol_av_full.yaml \\
        data.shards=shards/train

    # several GPUs on one machine (optim.batch_size is per process):
    accelerate launch --multi_gpu --num_processes 8 pretrain.py --config configs/pretrain/byol_av_full.yaml \\
        data.shards=shards/train

    # several nodes (run on each node with its own --machine_rank):
    accelerate launch --multi_gpu --num_machines 2 --num_processes 16 --machine_rank 0 \\
        --main_process_ip 10.0.0.1 --main_process_port 29500 pretrain.py \\
        --config configs/pretrain/byol_av_full.yaml data.shards=/data/shards/train

    # continue an interrupted run (same config and out_dir):
    python pretrain.py --config configs/pretrain/byol_tiny.yaml data.shards=shards/train --resume

With `-v`, every process logs the shards each data worker reads, the keys of every batch and a parameter
checksum after every step, so replicas can be compared line by line. `--resume` restores each process's
generators and data stream position, so a resumed run gets the batches an uninterrupted run would have got
(with the same number of processes and data workers).

Mixed precision comes from `optim.mixed_precision`, not from accelerate's flags. The run folder is written as
`OUT_DIR.partial` (OUT_DIR being `run.out_dir`) and renamed to OUT_DIR when training ends. Input mistakes (a
bad config, a missing shard set, an audio modality on shards without audio) print one line and exit with
status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pretrain.config import PretrainConfig, format_config_help, load_config
from pretrain.errors import PretrainError
from shards.cli import close_progress_bars
from shards.errors import ShardsInputError, environment_error_message

EXIT_INPUT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pretrain.py",
        description="Pretrain an audio-visual encoder without labels on a shard set.",
        epilog="config keys (set in the YAML file or as section.key=value):\n"
        + format_config_help(PretrainConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", required=True, metavar="YAML", help="config file, e.g. configs/pretrain/byol_tiny.yaml"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in run.out_dir from its checkpoints/last.pt"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.lr=0.0005"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # Imported here so that `--help` and config errors do not pay for importing torch and accelerate.
    try:
        config = load_config(PretrainConfig, args.config, args.overrides)
        from pretrain.train import train

        train(config, resume=args.resume)
    except (PretrainError, ShardsInputError) as error:
        close_progress_bars()
        print(f"pretrain.py: error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except OSError as error:
        message = environment_error_message(error)
        if message is None:
            raise
        close_progress_bars()
        print(f"pretrain.py: error: {message}; continue with --resume once there is room", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pretrain.py: interrupted; continue with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
