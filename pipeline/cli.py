"""The ``signin-risk`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import yaml

from pipeline.parse import DEFAULT_MAX_EVENT_BYTES
from pipeline.policy import PolicyError, load_policy

SAMPLE = Path(__file__).parent / "data" / "sample-signins.ndjson"


def _fail(message: str) -> int:
    print(f"signin-risk: {message}", file=sys.stderr)
    return 2


def _read_inputs(paths: Sequence[str]) -> Iterator[tuple[str, bytes]]:
    for path in paths:
        if path == "-":
            yield "<stdin>", sys.stdin.buffer.read()
        else:
            yield path, Path(path).read_bytes()


def cmd_scan(args: argparse.Namespace) -> int:
    from pipeline.scan import scan

    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        return _fail(str(exc))
    for path in args.paths:
        if path != "-" and not Path(path).is_file():
            return _fail(f"{path}: no such file")
    try:
        rejects = open(args.rejects, "wb") if args.rejects else None  # noqa: SIM115
    except OSError as exc:
        return _fail(f"{args.rejects}: cannot write rejects: {exc.strerror}")
    try:
        stats = scan(
            _read_inputs(args.paths), policy, sys.stdout.buffer, rejects, args.max_event_bytes
        )
    except OSError as exc:
        return _fail(f"{exc.filename}: {exc.strerror}")
    finally:
        if rejects is not None:
            rejects.close()
    sys.stdout.flush()
    print(stats.summary(), file=sys.stderr)
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.file)
    except PolicyError as exc:
        return _fail(str(exc))
    print(f"# effective policy ({args.file or 'built-in defaults'})")
    print(yaml.safe_dump(policy.effective(), sort_keys=False), end="")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from pipeline.bench import run_scan_bench

    print(run_scan_bench(args.records, args.repeat))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="signin-risk", description="Real-time Entra ID sign-in risk detection."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    scan = sub.add_parser("scan", help="detect over files offline; alerts as JSON lines")
    scan.add_argument(
        "paths",
        nargs="*",
        default=[str(SAMPLE)],
        metavar="PATH",
        help="files or '-' for stdin (default: the bundled sample)",
    )
    scan.add_argument("--policy", help="policy YAML (default: built-in defaults)")
    scan.add_argument("--rejects", metavar="FILE", help="write rejected records as JSON lines")
    scan.add_argument(
        "--max-event-bytes",
        type=int,
        default=DEFAULT_MAX_EVENT_BYTES,
        help="reject a JSON line (one delivery) larger than this",
    )
    scan.set_defaults(func=cmd_scan)

    check = sub.add_parser("check-config", help="validate a policy and print it in effect")
    check.add_argument("file", nargs="?", help="policy YAML (default: built-in defaults)")
    check.set_defaults(func=cmd_check_config)

    bench = sub.add_parser("bench", help="measure scan throughput against bare orjson")
    bench.add_argument("--records", type=int, default=20000, help="~5 KB sign-ins to generate")
    bench.add_argument("--repeat", type=int, default=5, help="runs; the best one is reported")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
