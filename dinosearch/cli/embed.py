"""``dinosearch embed``: an image folder or manifest → a features folder."""

from __future__ import annotations

import argparse
import sys

from dinosearch.core.config import add_config_arguments, config_from_args, job_record
from dinosearch.features.config import EmbedConfig

EXIT_CODES = (
    "exit status: 0 when images were embedded; 1 when none could be (the reason is printed); "
    "2 for a bad argument or an unreadable input file"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EXIT_CODES
    add_config_arguments(p, EmbedConfig)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(EmbedConfig, args)
    from dinosearch.cli.common import backbone_from_config
    from dinosearch.core.warnings import untrained_note
    from dinosearch.features.folder import embed_images

    backbone = backbone_from_config(config)
    if backbone.random_init:
        print(untrained_note(backbone.fingerprint))
    result = embed_images(
        config.images,
        backbone,
        config.out,
        path_column=config.path_column,
        label_from_folder=config.folder_labels,
        limit=config.limit,
        shard_size=config.shard_size,
        resume=config.resume,
        batch_size=config.batch_size,
        num_workers=config.num_workers,
        progress=config.progress,
        engine=config.engine,
        address=config.address,
        actors=config.actors,
        config=job_record("embed", config),
    )
    return _report(result.manifest, config, backbone.fingerprint)


def _report(manifest: dict, config: EmbedConfig, fingerprint: str) -> int:  # type: ignore[type-arg]
    skipped = manifest["skipped"]
    if skipped:
        import pandas as pd

        listing = pd.read_csv(f"{config.out}/skipped.csv")
        for path, reason in listing.itertuples(index=False):
            print(f"skipped {path}: {reason}")
    warned = manifest.get("warnings", 0)
    if warned:
        import pandas as pd

        notes = pd.read_csv(f"{config.out}/warnings.csv")
        for path, warning in notes.itertuples(index=False):
            print(f"warning {path}: {warning}")
        print(f"{warned} images embedded with a warning (listed in {config.out}/warnings.csv)")
    print(
        f"embedded {manifest['count']} images ({manifest['dim']}-d, {fingerprint}), "
        f"skipped {skipped} → {config.out}"
    )
    if manifest["count"] == 0:
        why = (
            f"no image could be read ({skipped} skipped, each listed above with its reason "
            f"and in {config.out}/skipped.csv)"
            if skipped
            else f"{config.images} lists no images"
        )
        print(f"dinosearch embed: nothing embedded: {why}", file=sys.stderr)
        return 1
    return 0
