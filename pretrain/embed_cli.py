"""The `latentwatch embed` and `latentwatch report` command lines."""

from __future__ import annotations

import argparse

from pretrain.errors import PretrainError
from pretrain.run_report import add_report_command
from shards.errors import ShardsInputError


def register(subparsers: argparse._SubParsersAction) -> tuple[type[Exception], ...]:
    """Add `latentwatch embed` and return the exception classes that mean an input mistake."""
    parser = subparsers.add_parser(
        "embed",
        help="export frozen embeddings of a shard set from a pretraining checkpoint",
        description=(
            "Run the checkpoint's online encoder (eval mode, no gradients) over every clip of a shard set in "
            "stored order and write embeddings.npy, meta.jsonl and header.json into a new folder. With an "
            "audio-shift checkpoint and --modality joint it also writes energy.npy: float32 (N,), row i the "
            "model's energy of clip i with its own audio (higher = less in sync, an anomaly score)."
        ),
    )
    parser.add_argument(
        "--checkpoint", required=True, metavar="PT", help="checkpoint, e.g. RUN/checkpoints/last.pt"
    )
    parser.add_argument("--shards", required=True, metavar="DIR", help="shard set folder to embed")
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="embeddings folder to create (must not exist)"
    )
    parser.add_argument(
        "--modality",
        choices=("joint", "video", "audio"),
        default="joint",
        help="embedding to export: the joint one (the representation) or one branch's (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, help="clips per forward pass (default: %(default)s)"
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "float16"),
        default="float32",
        help="storage type of embeddings.npy (default: %(default)s)",
    )
    parser.set_defaults(handler=run_embed)
    add_report_command(subparsers)
    return (PretrainError, ShardsInputError)


def run_embed(args: argparse.Namespace) -> int:
    from pretrain.embed import embed_shards

    out = embed_shards(
        args.checkpoint,
        args.shards,
        args.out,
        modality=args.modality,
        batch_size=args.batch_size,
        dtype=args.dtype,
    )
    print(f"wrote embeddings to {out}")
    return 0
