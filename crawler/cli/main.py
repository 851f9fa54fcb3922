"""The `civitai-mirror` command: crawl, status, verify and sim.

Bad input ends with exit code 2 and one readable line on stderr, never a traceback; the exit codes
of a crawl are 0 (all done), 1 (finished, some items failed or an error stopped it), 130 (interrupted).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import orjson

from crawler.config import settings as config_mod
from crawler.export import dataset as export_mod
from crawler.feed import partitions as partitions_mod
from crawler.state import report
from crawler.config.settings import ConfigError
from crawler.run.crawl import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Crawl
from crawler.state.lock import LockBusy
from crawler.store.errors import StoreError
from crawler.net.retry import RequestFailed

PROG = "civitai-mirror"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Mirror images and their generation metadata from CivitAI's public API, "
                     "politely and resumably.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    crawl = commands.add_parser("crawl", help="mirror the /images feed into DIR (resumes where it stopped)",
                                description="Mirror the /api/v1/images feed into DIR. Rerunning the same command resumes. "
                                "The API key, if any, is read from the environment variable CIVITAI_API_KEY and sent only "
                                "to the API, as an Authorization header. Exit codes: 0 all done, 1 some items failed or an "
                                "error stopped the crawl, 2 bad usage, 130 interrupted (resumable).")
    crawl.add_argument("--out", required=True, metavar="DIR|URL", help="mirror directory (images/, manifest.jsonl), or an "
                       "object store URL such as s3://bucket/prefix (then give --state)")
    crawl.add_argument("--state", metavar="DIR", help="local directory for the manifest and lock (default: --out itself; required when --out is an object store URL)")
    crawl.add_argument("--config", metavar="FILE", help="TOML file of settings (keys as the flags, with _); flags win over it")
    crawl.add_argument("--dry-run", action="store_true", help="walk the pages (at the API rate), fetch no image, write "
                       "nothing, and print what a crawl would fetch and an estimate of its size")
    crawl.add_argument("--plan", metavar="FILE", help="run the partitions of a plan (made by `civitai-mirror plan`) as "
                       "parallel cursor chains into this one mirror, each with its own checkpoints")
    config_mod.add_arguments(crawl)

    plan = commands.add_parser("plan", help="split one query into partitions that a crawl runs as parallel cursor chains",
                               description="Write a plan: the query (the crawl flags below) split by creator, base model, "
                               "model version or period window. `crawl --plan FILE` runs every partition as its own "
                               "cursor chain, in parallel, into one mirror; they share --api-rps, so partitions help "
                               "where one chain is slowed by the API's latency, not past the rate limit.")
    plan.add_argument("--by", required=True, choices=partitions_mod.BY, help="username, base-model, model-version: one "
                      "partition per --value; period: Day, then Week, Month, Year and all time each without the shorter "
                      "window (measured from the API server's clock, its Date header: one API request)")
    plan.add_argument("--value", action="append", default=[], metavar="V", help="a value to split by (repeatable)")
    plan.add_argument("--to", required=True, metavar="FILE", help="where to write the plan (JSON)")
    plan.add_argument("--overlap", default="1d", metavar="DURATION", help="--by period: how far windows overlap, "
                      "which is how long after planning a crawl may still use the plan (default: 1d)")
    plan.add_argument("--config", metavar="FILE", help="TOML file of settings; flags win over it")
    config_mod.add_arguments(plan)

    follow = commands.add_parser("follow", help="keep a mirror current: a newest-first pass every --interval, forever",
                                 description="Run as a service: the first pass is a full crawl (resumable), each later "
                                 "pass walks the feed newest-first only down to what earlier passes mirrored, then "
                                 "sleeps --interval. API outages are waited out with backoff; only a signal (exit 130), "
                                 "a fatal API answer (bad key, region, bad query) or a full disk (exit 1) end it. "
                                 "Takes every crawl option; the feed is always walked with --sort Newest.")
    follow.add_argument("--out", required=True, metavar="DIR|URL", help="mirror directory or object store URL")
    follow.add_argument("--state", metavar="DIR", help="local directory for the manifest and lock (default: --out itself; required when --out is an object store URL)")
    follow.add_argument("--config", metavar="FILE", help="TOML file of settings; flags win over it")
    follow.add_argument("--interval", default="10m", metavar="DURATION", help="time between passes, e.g. 90s, 10m, 2h "
                        "(default: 10m; +-10%% jitter)")
    follow.add_argument("--passes", type=int, default=None, metavar="N", help="stop after N passes (default: run forever)")
    follow.add_argument("--metrics-port", type=int, default=None, metavar="PORT", help="serve Prometheus metrics on "
                        "http://127.0.0.1:PORT/metrics (0: any free port, printed at start)")
    follow.add_argument("--metrics-addr", default="127.0.0.1", metavar="ADDR", help="address for the metrics endpoint "
                        "(default: 127.0.0.1)")
    follow.add_argument("--compact-above", default="256MB", metavar="SIZE", help="compact the manifest automatically once "
                        "it is larger than SIZE and mostly superseded records (default: 256MB)")
    config_mod.add_arguments(follow)

    compact = commands.add_parser("compact", help="rewrite the manifest as one record per image (keeps the old one as "
                                  "manifest.jsonl.prev); refuses while a crawl holds the mirror")
    compact.add_argument("--out", required=True, metavar="DIR|URL", help="mirror directory or object store URL")
    compact.add_argument("--state", metavar="DIR", help="local directory for the manifest and lock (default: --out itself; required when --out is an object store URL)")

    show = commands.add_parser("config", help="show the effective settings and where each came from")
    show_commands = show.add_subparsers(dest="config_command", metavar="ACTION", parser_class=_Parser)
    show_commands.required = True
    show_cmd = show_commands.add_parser("show", help="print every setting with its source: default, file, environment, flag")
    show_cmd.add_argument("--out", metavar="DIR", default=".", help="mirror directory (only shown)")
    show_cmd.add_argument("--config", metavar="FILE", help="TOML file of settings")
    show_cmd.add_argument("--json", action="store_true", help="print one JSON object")
    config_mod.add_arguments(show_cmd)

    status = commands.add_parser("status", help="what a mirror holds and why its last crawl stopped")
    status.add_argument("--out", required=True, metavar="DIR|URL", help="mirror directory or object store URL")
    status.add_argument("--state", metavar="DIR", help="local directory for the manifest and lock (default: --out itself; required when --out is an object store URL)")
    status.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    status.add_argument("--max-age", default=None, metavar="DURATION", help="health check: exit 1 unless a crawl or "
                        "follow pass completed within DURATION (e.g. 30m)")

    verify = commands.add_parser("verify", help="re-hash every done file against the manifest (exit 1 on any problem)")
    verify.add_argument("--out", required=True, metavar="DIR|URL", help="mirror directory or object store URL")
    verify.add_argument("--storage-option", action="append", metavar="KEY=VALUE", help="an fsspec option for an object "
                        "store --out (repeatable), as for crawl")
    verify.add_argument("--state", metavar="DIR", help="local directory for the manifest and lock (default: --out itself; required when --out is an object store URL)")

    export = commands.add_parser("export", help="write the mirror as a dataset: jsonl, parquet or webdataset shards",
                                 description="Export every done image (path, sha256, size, dimensions, nsfw level, "
                                 "creator, model versions, reactions, prompt and the other generation fields) as a "
                                 "dataset. Safe while a crawl runs: it exports what was complete when it started.")
    export.add_argument("--out", required=True, metavar="DIR|URL", help="mirror directory or object store URL")
    export.add_argument("--storage-option", action="append", metavar="KEY=VALUE", help="an fsspec option for an object "
                        "store --out (repeatable), as for crawl")
    export.add_argument("--state", metavar="DIR", help="local directory for the manifest and lock (default: --out itself; required when --out is an object store URL)")
    export.add_argument("--format", required=True, choices=export_mod.FORMATS, help="jsonl, parquet (needs pyarrow), "
                        "webdataset (tar shards of {key}.jpg + {key}.json) or captions (a folder of images, hard-linked "
                        "where possible, each beside a {key}.txt caption: the layout LoRA trainers read)")
    export.add_argument("--to", required=True, metavar="PATH", help="output file (jsonl, parquet) or directory (webdataset, captions)")
    export.add_argument("--caption-field", default="prompt", metavar="FIELD", help="captions: the field written to "
                        "each .txt (default: prompt)")
    export.add_argument("--shard-size", type=int, default=1000, metavar="N", help="samples per webdataset shard (default: 1000)")

    sim = commands.add_parser("sim", help="run the CivitAI simulator on 127.0.0.1 (for tests and demos)")
    from crawler.simulator import cli as sim_cli
    sim_cli.add_arguments(sim)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "crawl":
            return _crawl(args)
        if args.command == "plan":
            return _plan(args)
        if args.command == "follow":
            return _follow(args)
        if args.command == "compact":
            return _compact(config_mod.state_root(args.out, args.state))
        if args.command == "config":
            return _config_show(args)
        if args.command == "status":
            return _status(config_mod.state_root(args.out, args.state), args.json, _duration(args.max_age, "--max-age") if args.max_age else None)
        if args.command == "verify":
            return _verify(args.out, config_mod.state_root(args.out, args.state), args.storage_option)
        if args.command == "export":
            return _export(args)
        from crawler.simulator import cli as sim_cli
        return sim_cli.run(args)
    except ConfigError as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return EXIT_USAGE
    except export_mod.ExportError as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return EXIT_USAGE
    except LockBusy as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return EXIT_USAGE
    except StoreError as e:  # the object store (or the directory) behind --out cannot be used
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _crawl(args: argparse.Namespace) -> int:
    cli_values = {o.name: getattr(args, o.name, None) for o in config_mod.OPTIONS}
    cfg = config_mod.build(args.out, cli_values, args.config, state=args.state)
    partitions = None
    if args.plan:
        if args.dry_run:
            raise ConfigError("--dry-run does not take --plan; dry-run the query itself")
        partitions, header = partitions_mod.load(Path(args.plan))
        for partition in partitions:
            partitions_mod.apply_partition(cfg, partition)  # every partition valid before anything starts
        if orjson.loads(orjson.dumps(cfg.query_summary())) != header.get("query"):
            raise ConfigError(f"--plan {args.plan} was made for the query {header.get('query')}, this crawl asks "
                              f"{cfg.query_summary()}: give the same query flags")
        expires = partitions_mod.expires(header)
        if expires is not None and time.time() >= expires:
            raise ConfigError(f"--plan {args.plan}: its period windows were cut {header.get('created')} and overlap by "
                              f"{header.get('overlap_seconds', 0) / 3600:g}h, which has passed: items may have moved "
                              "between windows. Make a new plan (done images are not fetched again)")
    if args.dry_run:
        return _run_loop(_dry_run_async(cfg))
    _join_ray(cfg)
    return _run_loop(_crawl_async(cfg, partitions, expires if partitions else None))


def _join_ray(cfg: config_mod.CrawlConfig) -> None:
    """Before our signal handlers are installed, so that Ray's start-up cannot replace them."""
    if cfg.executor == "ray":
        from crawler.run import ray_executor
        ray_executor.connect(cfg)


async def _dry_run_async(cfg: config_mod.CrawlConfig) -> int:
    from crawler.run import dryrun
    if cfg.state.exists() and not cfg.state.is_dir():
        raise ConfigError(f"--state {cfg.state} exists and is not a directory")
    report = await dryrun.dry_run(cfg)
    for text in dryrun.format_report(report):
        print(text)
    return EXIT_OK if report.reason in ("feed-ended", "max-images", "max-pages", "since-reached") else EXIT_FAILED


def _config_show(args: argparse.Namespace) -> int:
    cli_values = {o.name: getattr(args, o.name, None) for o in config_mod.OPTIONS}
    cfg, sources = config_mod.build_with_sources(args.out, cli_values, args.config)
    described = config_mod.describe(cfg)
    if args.json:
        data = {name: {"value": described[name], "source": sources.get(name, "default")} for name in described}
        sys.stdout.write(orjson.dumps(data).decode() + "\n")
        return EXIT_OK
    width = max(len(name) for name in described)
    for name, value in described.items():
        print(f"{name:<{width}}  {value!r:<40}  ({sources.get(name, 'default')})")
    return EXIT_OK


def _plan(args: argparse.Namespace) -> int:
    from datetime import timedelta
    cli_values = {o.name: getattr(args, o.name, None) for o in config_mod.OPTIONS}
    cfg = config_mod.build(".", cli_values, args.config)  # only the query is used: nothing is written but the plan
    overlap = timedelta(seconds=_duration(args.overlap, "--overlap"))
    now = None
    if args.by == "period":
        partitions_mod.split(cfg, args.by, args.value, datetime.now(timezone.utc), overlap)  # usage errors first
        try:
            now = _run_loop(partitions_mod.server_now(cfg))
        except RequestFailed as e:
            sys.stderr.write(f"{PROG}: error: could not read the API server's clock: {e}\n")
            return EXIT_FAILED
    partitions = partitions_mod.split(cfg, args.by, args.value, now, overlap)
    partitions_mod.save(Path(args.to), cfg, args.by, partitions, overlap)
    print(f"wrote {len(partitions)} partition(s) to {args.to}" + (
        f" (windows measured from the API server's clock, {now.isoformat()}; usable for {args.overlap})"
        if now else ""))
    for partition in partitions:
        print(f"  {partition.name}: {partition.settings}")
    print(f"run them: {PROG} crawl --plan {args.to} --out DIR [the same query flags]")
    return EXIT_OK


async def _crawl_async(cfg: config_mod.CrawlConfig, partitions: list | None = None,
                       plan_expires: float | None = None) -> int:
    crawl = Crawl(cfg, partitions=partitions, plan_expires=plan_expires)
    with _signals(crawl.log, crawl.request_stop, crawl.force_exit):
        outcome = await crawl.run()
    return outcome.exit_code


@contextmanager
def _signals(log: Callable[[str], None], request_stop: Callable[[], None], force_exit: Callable[[], None]) -> Iterator[None]:
    """SIGINT/SIGTERM: the first asks for a graceful stop, a second exits at once."""
    loop = asyncio.get_running_loop()
    count = 0

    def on_signal() -> None:
        nonlocal count
        count += 1
        if count == 1:
            log("signal received: finishing in-flight downloads (a second signal exits at once)")
            request_stop()
        else:
            force_exit()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _run_loop(coro) -> int:  # type: ignore[no-untyped-def]
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _require_mirror(root: Path) -> None:
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory")
    if not (root / "manifest.jsonl").exists():
        raise ConfigError(f"{root} has no manifest.jsonl: not a mirror (yet)")


def _status(root: Path, as_json: bool, max_age: float | None = None) -> int:
    _require_mirror(root)
    summary = report.summarise(root)
    if as_json:
        sys.stdout.write(orjson.dumps(summary.as_dict(), option=orjson.OPT_NON_STR_KEYS).decode() + "\n")
    else:
        for text in report.format_summary(summary):
            print(text)
    if max_age is not None:
        age = summary.success_age()
        if age is None or age > max_age:
            sys.stderr.write(f"{PROG}: unhealthy: no complete crawl or pass in the last {max_age:g}s\n")
            return EXIT_FAILED
    return EXIT_OK


_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "kb": 1e3, "mb": 1e6, "gb": 1e9, "b": 1}


def _duration(text: str, flag: str) -> float:
    return _quantity(text, flag, ("", "s", "m", "h", "d"), "a duration such as 90s, 10m, 2h")


def _size(text: str, flag: str) -> int:
    return int(_quantity(text, flag, ("", "b", "kb", "mb", "gb"), "a size such as 500MB"))


def _quantity(text: str, flag: str, units: tuple[str, ...], example: str) -> float:
    raw = text.strip().lower()
    number = raw.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = raw[len(number):]
    try:
        value = float(number)
    except ValueError:
        raise ConfigError(f"{flag}: {text!r} is not {example}") from None
    if unit not in units or value <= 0 or value != value:
        raise ConfigError(f"{flag}: {text!r} is not {example}")
    return value * _UNITS[unit]


def _follow(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from crawler.run.follow import FollowSettings
    cli_values = {o.name: getattr(args, o.name, None) for o in config_mod.OPTIONS}
    cfg = config_mod.build(args.out, cli_values, args.config, state=args.state)
    if cfg.sort not in (None, "Newest"):
        raise ConfigError("follow walks the feed newest first: drop --sort or give --sort Newest")
    if args.passes is not None and args.passes < 1:
        raise ConfigError("--passes must be at least 1")
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        raise ConfigError("--metrics-port must be 0..65535")
    settings = FollowSettings(interval=_duration(args.interval, "--interval"), passes=args.passes,
                              compact_above=_size(args.compact_above, "--compact-above"))
    _join_ray(cfg)
    return _run_loop(_follow_async(replace(cfg, sort="Newest"), settings, args.metrics_port, args.metrics_addr))


async def _follow_async(cfg: config_mod.CrawlConfig, settings, metrics_port: int | None, metrics_addr: str) -> int:  # type: ignore[no-untyped-def]
    from crawler.run.follow import Follower
    follower = Follower(cfg, settings, sys.stderr)
    server = None
    if metrics_port is not None:
        from crawler.run import metrics
        try:
            server = metrics.serve(follower, metrics_port, metrics_addr)
        except OSError as e:
            raise ConfigError(f"--metrics-port {metrics_port}: cannot listen on {metrics_addr}: {e.strerror}") from None
        follower.log(f"metrics on http://{metrics_addr}:{server.server_port}/metrics")
    try:
        with _signals(follower.log, follower.request_stop, follower.force_exit):
            return await follower.run()
    finally:
        if server is not None:
            server.shutdown()


def _compact(root: Path) -> int:
    from crawler.state.compact import compact
    from crawler.state.lock import DirLock
    _require_mirror(root)
    with DirLock(root):
        result = compact(root)
    print(f"compacted {root / 'manifest.jsonl'}: {result.records_before} -> {result.records_after} records, "
          f"{result.bytes_before / 1e6:.1f} -> {result.bytes_after / 1e6:.1f} MB (previous kept as manifest.jsonl.prev)")
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from crawler.locations import is_remote, local_path, parse_storage_options
    root = config_mod.state_root(args.out, args.state)
    _require_mirror(root)
    if args.shard_size < 1:
        raise ConfigError("--shard-size must be at least 1")
    if is_remote(args.out):
        try:
            images: Any = export_mod.RemoteImages(args.out, parse_storage_options(args.storage_option or ()))
        except ImportError as e:
            raise ConfigError(f"--out {args.out} needs fsspec and its backend: pip install 'civitai-mirror[s3]' ({e})") from None
        except ValueError as e:
            raise ConfigError(f"--storage-option: {e}") from None
    else:
        images = export_mod.LocalImages(local_path(args.out))
    result = export_mod.export(root, args.format, Path(args.to), args.shard_size, args.caption_field, images)
    note = f" ({result.skipped_missing} skipped: file missing)" if result.skipped_missing else ""
    if args.format == "captions":
        note += (f"; {result.linked} hard-linked, {result.copied} copied, "
                 f"{result.uncaptioned} without a {args.caption_field} left out")
    print(f"exported {result.rows} image(s) as {args.format} to {args.to}{note}")
    return EXIT_OK


def _verify(out: str, root: Path, storage_option: list[str] | None) -> int:
    from crawler.store.paths import make_store
    from crawler.locations import parse_storage_options
    _require_mirror(root)
    try:
        options = parse_storage_options(storage_option or ())
    except ValueError as e:
        raise ConfigError(f"--storage-option: {e}") from None
    checked, problems = _run_loop(_verify_async(root, make_store(out, options)))
    for p in problems:
        print(f"{p.what}: {p.path or '(no path)'} (image {p.key})")
    print(f"verified {checked} file(s): {len(problems)} problem(s)")
    return EXIT_FAILED if problems else EXIT_OK


async def _verify_async(root: Path, store) -> tuple[int, list]:  # type: ignore[no-untyped-def]
    from crawler.store.errors import StoreError
    try:
        await store.open()
    except (StoreError, OSError) as e:
        await store.close()
        raise ConfigError(f"--out {store.url}: {e}") from None
    try:
        return await report.verify(root, store)
    finally:
        await store.close()


if __name__ == "__main__":
    sys.exit(main())
