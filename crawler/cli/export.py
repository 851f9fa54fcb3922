"""`civitai-mirror export`: write the mirror's done images as a dataset (jsonl, parquet, webdataset, captions, hf).

Safe while a crawl runs: it exports what was complete when it started. What cannot be exported is an
`ExportError`, printed by `main` as one line with exit 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from crawler.cli.parsing import STORAGE_OPTION_HELP, Subparsers, add_mirror, require_mirror
from crawler.config.settings import ConfigError, state_root
from crawler.export import dataset
from crawler.locations import is_remote, local_path, parse_storage_options
from crawler.stops import EXIT_OK

DESCRIPTION = ("Export every done image (path, sha256, size, dimensions, nsfw level, creator, model versions, "
               "reactions, prompt and the other generation fields) as a dataset. Safe while a crawl runs: it exports "
               "what was complete when it started.")


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "export", help=f"write the mirror as a dataset: {', '.join(dataset.FORMATS)}", description=DESCRIPTION)
    add_mirror(parser)
    parser.add_argument("--storage-option", action="append", metavar="KEY=VALUE", help=STORAGE_OPTION_HELP)
    parser.add_argument("--format", required=True, choices=dataset.FORMATS, help="jsonl, parquet (needs pyarrow), "
                        "webdataset (tar shards of {key}.jpg + {key}.json + {key}.txt), captions (a folder of images, "
                        "hard-linked where possible, each beside a {key}.txt caption: the layout LoRA trainers read) "
                        "or hf (a folder for datasets.load_dataset: parquet shards with an Image column and a dataset card)")
    parser.add_argument("--to", required=True, metavar="PATH", help="output file (jsonl, parquet) or directory "
                        "(webdataset, captions, hf)")
    parser.add_argument("--caption-field", default="prompt", metavar="FIELD", help="captions and webdataset: the "
                        "field written to each .txt (default: prompt)")
    parser.add_argument("--shard-size", type=int, default=1000, metavar="N", help="samples per webdataset shard "
                        "(default: 1000)")
    parser.add_argument("--embed-images", action="store_true", help="parquet: each image's bytes in the file, "
                        "as the Hugging Face Image feature (hf always embeds them)")
    parser.add_argument("--verify", action="store_true", help="re-hash each image shipped (webdataset, captions, "
                        "hf, --embed-images) against the manifest's sha256; a file whose size or hash changed is left "
                        "out and counted (the size is always checked)")
    parser.add_argument("--include-videos", action="store_true", help="hf: video rows too, as a video_path column "
                        "(left out by default)")
    return parser


def run(args: argparse.Namespace) -> int:
    root = state_root(args.out, args.state)
    require_mirror(root)
    if args.shard_size < 1:
        raise ConfigError("--shard-size must be at least 1")
    options = dataset.ExportOptions(embed_images=args.embed_images, include_videos=args.include_videos,
                                    verify=args.verify)
    result = dataset.export(root, args.format, Path(args.to), args.shard_size, args.caption_field, _images(args),
                            options=options)
    note = f" ({result.skipped_missing} skipped: file missing)" if result.skipped_missing else ""
    if result.changed:
        note += (f"; {result.changed} left out: the file no longer matches the manifest (`civitai-mirror verify` "
                 "names them)")
    if result.excluded:
        note += f"; {result.excluded} excluded (serve's exclusion list)"
    if result.videos_left_out:
        note += f"; {result.videos_left_out} video(s) left out (--include-videos keeps them)"
    if args.format == "captions":
        note += (f"; {result.linked} hard-linked, {result.copied} copied, "
                 f"{result.uncaptioned} without a {args.caption_field} left out")
    print(f"exported {result.rows} image(s) as {args.format} to {args.to}{note}")
    if result.pattern:
        print(f"webdataset shards: {result.pattern}")
    if args.format == "hf":
        print(f'load with: datasets.load_dataset("{args.to}")')
    return EXIT_OK


def _images(args: argparse.Namespace) -> Any:
    """Where the image files are read: the local directory, or the object store behind --out."""
    if not is_remote(args.out):
        return dataset.LocalImages(local_path(args.out))
    try:
        return dataset.RemoteImages(args.out, parse_storage_options(args.storage_option or ()))
    except ImportError as e:
        raise ConfigError(f"--out {args.out} needs fsspec and its backend: pip install 'civitai-mirror[s3]' ({e})") from None
    except ValueError as e:
        raise ConfigError(f"--storage-option: {e}") from None
