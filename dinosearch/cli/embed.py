"""``dinosearch embed``: an image folder or manifest → a features folder."""

from __future__ import annotations

import argparse
import sys

from dinosearch.cli.common import add_backbone_arguments, add_runtime_arguments, backbone_from_args
from dinosearch.features.folder import ENGINES, embed_images

EXIT_CODES = (
    "exit status: 0 when images were embedded; 1 when none could be (the reason is printed); "
    "2 for a bad argument or an unreadable input file"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EXIT_CODES
    p.add_argument(
        "--images", required=True, help="image folder (recursive) or CSV/Parquet manifest"
    )
    p.add_argument("--out", required=True, help="features folder to write")
    p.add_argument("--path-column", default=None, help="manifest column holding image paths")
    p.add_argument(
        "--no-folder-labels", action="store_true", help="do not take labels from sub-folders"
    )
    p.add_argument(
        "--limit", type=int, default=None, help="embed only the first N images (stable order)"
    )
    p.add_argument("--shard-size", type=int, default=4096, help="images per shard (resume unit)")
    p.add_argument(
        "--resume", action="store_true", help="continue an interrupted run, keeping its shards"
    )
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help='local: this process; ray: a Ray Data pipeline of model replicas (pip install "dinosearch[ray]")',
    )
    p.add_argument(
        "--address",
        default=None,
        help="--engine ray: the cluster to join (auto, ray://HEAD:10001); default: start a local one",
    )
    p.add_argument(
        "--actors",
        type=int,
        default=None,
        help="--engine ray: model replicas (default: one per GPU, else one per CPU)",
    )
    add_backbone_arguments(p)
    add_runtime_arguments(p)


def run(args: argparse.Namespace) -> int:
    if args.engine == "local" and (args.address or args.actors):
        raise ValueError("--address and --actors apply to --engine ray; add --engine ray")
    backbone = backbone_from_args(args)
    if backbone.random_init:
        print(
            f"note: {backbone.name} is randomly initialised ({backbone.weights}): features are untrained"
        )
    result = embed_images(
        args.images,
        backbone,
        args.out,
        path_column=args.path_column,
        label_from_folder=not args.no_folder_labels,
        limit=args.limit,
        shard_size=args.shard_size,
        resume=args.resume,
        batch_size=args.batch_size,
        num_workers=args.workers,
        progress=not args.no_progress,
        engine=args.engine,
        address=args.address,
        actors=args.actors,
    )
    skipped = result.manifest["skipped"]
    if skipped:
        import pandas as pd

        listing = pd.read_csv(f"{args.out}/skipped.csv")
        for path, reason in listing.itertuples(index=False):
            print(f"skipped {path}: {reason}")
    warned = result.manifest.get("warnings", 0)
    if warned:
        import pandas as pd

        notes = pd.read_csv(f"{args.out}/warnings.csv")
        for path, warning in notes.itertuples(index=False):
            print(f"warning {path}: {warning}")
        print(f"{warned} images embedded with a warning (listed in {args.out}/warnings.csv)")
    print(
        f"embedded {result.manifest['count']} images ({result.manifest['dim']}-d, {backbone.fingerprint}), "
        f"skipped {skipped} → {args.out}"
    )
    if result.manifest["count"] == 0:
        why = (
            f"no image could be read ({skipped} skipped, each listed above with its reason "
            f"and in {args.out}/skipped.csv)"
            if skipped
            else f"{args.images} lists no images"
        )
        print(f"dinosearch embed: nothing embedded: {why}", file=sys.stderr)
        return 1
    return 0
