"""The Hugging Face side of an export: the `datasets` features of each column, and the dataset card.

`features()` is what `datasets` reads from each Parquet file's `huggingface` schema metadata (so the
`image` column decodes to pictures and integers stay integers); `card()` is the README.md whose YAML
header the Hub reads (features, size, files, licence). Both are written by hand from `rows.COLUMNS`,
so exporting needs neither `datasets` nor a YAML library; lists use the `Sequence` form that every
`datasets` version reads. Pure functions: no I/O.
"""

from __future__ import annotations

import json
from typing import Any

from crawler.export.rows import COLUMNS

IMAGE, VIDEO_PATH = "image", "video_path"
TIMESTAMPS = frozenset({"created_at"})  # ISO text in jsonl/parquet; a real timestamp for the Hub
TIMESTAMP = "timestamp[us, tz=UTC]"
_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"))


def column_types(timestamps: bool) -> list[tuple[str, str]]:
    """`rows.COLUMNS`, with `created_at` a timestamp when `timestamps`."""
    return [(name, TIMESTAMP if timestamps and name in TIMESTAMPS else kind) for name, kind in COLUMNS]


def _feature(kind: str) -> dict[str, Any]:
    if kind.startswith("list<"):
        return {"feature": _feature(kind[len("list<"):-1]), "_type": "Sequence"}
    return {"dtype": kind, "_type": "Value"}


def features(image: bool, video: bool, timestamps: bool) -> dict[str, Any]:
    """The `datasets` Features (as its JSON form) of an export's columns, `image` first when present."""
    found: dict[str, Any] = {IMAGE: {"_type": "Image"}} if image else {}
    found.update((name, _feature(kind)) for name, kind in column_types(timestamps))
    if video:
        found[VIDEO_PATH] = _feature("string")
    return found


def schema_metadata(image: bool, video: bool, timestamps: bool) -> dict[bytes, bytes]:
    return {b"huggingface": json.dumps({"info": {"features": features(image, video, timestamps)}}).encode()}


def _yaml_feature(name: str, feature: dict[str, Any]) -> list[str]:
    if feature["_type"] == "Image":
        return [f"  - name: {name}", "    dtype: image"]
    if feature["_type"] == "Sequence":
        return [f"  - name: {name}", f"    sequence: {json.dumps(feature['feature']['dtype'])}"]
    return [f"  - name: {name}", f"    dtype: {json.dumps(feature['dtype'])}"]


def size_category(rows: int) -> str:
    for bound, name in _SIZES:
        if rows < bound:
            return name
    return "n>100M"


def card(rows: int, data_bytes: int, files: str, video: bool) -> str:
    """README.md of an export of `rows` images in the parquet files matching `files` (relative glob)."""
    lines = ["---", "license: other", "license_name: civitai-creators",
             'license_details: "Each image keeps the terms its creator published it under on CivitAI."',
             "pretty_name: CivitAI mirror export", "task_categories:", "- text-to-image", "tags:", "- civitai",
             "size_categories:", f"- {size_category(rows)}", "configs:", "- config_name: default",
             "  data_files:", "  - split: train", f"    path: {json.dumps(files)}", "dataset_info:", "  features:"]
    for name, feature in features(True, video, True).items():
        lines += [f"  {line}" for line in _yaml_feature(name, feature)]
    lines += ["  splits:", "  - name: train", f"    num_examples: {rows}", f"  download_size: {data_bytes}", "---", ""]
    return "\n".join(lines) + f"""# CivitAI mirror export

{rows} images with their prompts and metadata, exported from a CivitAI mirror by
`civitai-mirror export --format hf`.

```python
from datasets import load_dataset
dataset = load_dataset("path/to/this/folder", split="train")
dataset[0]["image"]  # a PIL image
```

Columns: `image` (the picture), `prompt` and `negative_prompt`, generation settings (`seed`, `steps`,
`sampler`, `cfg_scale`, `clip_skip`), creator and model fields, reaction counts, `created_at`, and
`meta_json` (the full generation metadata as JSON text).

## Licence

The images are not the exporter's: each keeps the terms its creator published it under on CivitAI.
Check those terms before redistributing or training on them.
"""
