"""The ``signin-risk`` command line."""

from __future__ import annotations

import argparse
import gc
import importlib
import io
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import yaml

from pipeline.alerts.render import SCAN_FORMATS, ScanFormat
from pipeline.alerts.table import colour_wanted, terminal_width
from pipeline.core.parse import DEFAULT_MAX_EVENT_BYTES
from pipeline.core.policy import PolicyError, load_policy
from pipeline.runtime.files import open_private
from pipeline.runtime.procs import Interrupted, interrupt_on_signals
from pipeline.runtime.settings import STAGES, STREAMS, Settings
from pipeline.sources.inputs import (
    STDIN,
    STDIN_HINT,
    InputError,
    expand,
    open_inputs,
    read_inputs,
)

SAMPLE = Path(__file__).parent / "data" / "sample-signins.ndjson"


def _fail(message: str) -> int:
    print(f"signin-risk: {message}", file=sys.stderr)
    return 2


def _read_inputs(paths: Sequence[str], command: str = "scan") -> Iterator[tuple[str, bytes]]:
    """Every input's content: directories expanded, gzip decompressed (``InputError``, an
    ``OSError``, when one cannot be read); on a terminal, stdin says it waits for input."""
    if STDIN in paths and sys.stdin.isatty():
        print(STDIN_HINT.format(command=command), file=sys.stderr)
    yield from read_inputs(expand(paths))


@contextmanager
def _streamed(paths: Sequence[str], command: str) -> Iterator[Iterator[tuple[str, BinaryIO]]]:
    """Every input as a stream read while its records are judged (directories expanded, gzip
    decompressed, ``InputError`` when one cannot be read), under a progress bar of the bytes
    read; on a terminal, stdin says it waits for input, and no bar draws over what is typed."""
    from pipeline.runtime import progress

    typed = STDIN in paths and sys.stdin.isatty()
    if typed:
        print(STDIN_HINT.format(command=command), file=sys.stderr)
    files = expand(paths)
    with progress.bar(command, progress.input_bytes(files), shown=not typed) as bar:
        yield open_inputs(files, bar.update)


def _missing_input(paths: Sequence[str]) -> str | None:
    """The one-line failure for a path that names no readable input, else None."""
    try:
        expand(paths)
    except InputError as exc:
        return str(exc)
    return None


def cmd_scan(args: argparse.Namespace) -> int:
    from pipeline.core.scan import scan

    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        return _fail(str(exc))
    if missing := _missing_input(args.paths):
        return _fail(missing)
    mode = _settings().file_mode_bits
    try:
        rejects = open_private(args.rejects, mode) if args.rejects else None
        output = open_private(args.output, mode) if args.output else None
    except OSError as exc:
        return _fail(f"{exc.filename}: cannot write: {exc.strerror}")
    found = io.BytesIO()
    try:
        incidents = open_private(args.incidents, mode) if args.incidents else None
    except OSError as exc:
        return _fail(f"{args.incidents}: cannot write incidents: {exc.strerror}")
    try:
        with _streamed(args.paths, "scan") as inputs:
            stats = scan(inputs, policy, found, rejects, args.max_event_bytes, incidents)
    except OSError as exc:
        return _fail(f"{exc.filename}: {exc.strerror}")
    finally:
        for opened in (rejects, incidents):
            if opened is not None:
                opened.close()
    _write_alerts(found.getvalue(), args.format, output)
    print(stats.summary(), file=sys.stderr)
    return 0


def _write_alerts(found: bytes, fmt: ScanFormat, output: BinaryIO | None) -> None:
    """Scan's alerts (JSON lines) in ``fmt``, to ``output`` (closed after) or stdout."""
    from pipeline.alerts import render

    out = output or sys.stdout.buffer
    try:
        if fmt == "json":
            out.write(found)
        else:
            alerts = [orjson.loads(raw) for raw in found.splitlines()]
            terminal = output is None
            colour = terminal and colour_wanted(sys.stdout)
            render.write(alerts, fmt, out, colour, terminal_width(sys.stdout) if terminal else 0)
    finally:
        if output is not None:
            output.close()
        else:
            sys.stdout.flush()


def _masker(kinds: str | None) -> Callable[[dict[str, Any]], dict[str, Any]] | str:
    """What ``--pseudonymize user,ip`` asks for (sinks' ``pseudonymize``, under the same
    SIGNIN_RISK_PSEUDONYM_KEY), or why it cannot be done."""
    from pipeline.alerts.privacy import restrict

    chosen = tuple(k for k in (kinds or "").split(",") if k)
    if any(k not in ("user", "ip") for k in chosen):
        return f"--pseudonymize takes user, ip or user,ip, not {kinds!r}"
    key = _settings().pseudonym_key.get_secret_value().encode()
    if chosen and not key:
        return "--pseudonymize needs SIGNIN_RISK_PSEUDONYM_KEY (a secret) to be set"
    return lambda row: restrict(row, None, chosen, key) if chosen else row  # type: ignore[arg-type]


def _offline(args: argparse.Namespace) -> Any:
    """(policy, pseudonymiser) of ``inventory`` and ``report``, or the one-line failure for
    the policy, a missing input or ``--pseudonymize``."""
    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        return str(exc)
    mask = _missing_input(args.paths) or _masker(args.pseudonymize)
    return mask if isinstance(mask, str) else (policy, mask)


def cmd_inventory(args: argparse.Namespace) -> int:
    import csv
    import io

    import orjson

    from pipeline.core.inventory import FIELDS, Inventory
    from pipeline.core.scan import ScanStats, detect

    chosen = _offline(args)
    if isinstance(chosen, str):
        return _fail(chosen)
    policy, mask = chosen
    book = Inventory(policy)
    try:
        with _streamed(args.paths, "inventory") as inputs:
            for result in detect(inputs, policy, ScanStats()):
                for enriched in result.enriched:
                    book.add(enriched)
    except OSError as exc:
        return _fail(f"{exc.filename}: {exc.strerror}")
    rows = [mask(row) for row in book.rows(args.non_compliant)]
    text = io.StringIO()
    if args.format == "json":
        text.writelines(orjson.dumps(row).decode() + "\n" for row in rows)
    elif args.format == "csv":
        writer = csv.DictWriter(text, FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        shown = ("user", "name", "platform", "version", "last_seen", "count", "last_ca_result")
        table = [[*shown, "issue"]]
        table += [[str(r[c]) for c in shown] + [r["issue"] or "ok"] for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        text.writelines(
            "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n"
            for row in table
        )
    data = text.getvalue().encode()
    if args.output:
        if failed := _write_private(args.output, data):
            return _fail(failed)
    else:
        sys.stdout.buffer.write(data)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pipeline.alerts.report import collect, render

    chosen = _offline(args)
    if isinstance(chosen, str):
        return _fail(chosen)
    policy, mask = chosen
    try:
        out = open_private(args.output, _settings().file_mode_bits)
    except OSError as exc:
        return _fail(f"{args.output}: cannot write: {exc.strerror}")
    with out:
        try:
            with _streamed(args.paths, "report") as inputs:
                tally = collect(inputs, policy, mask, args.max_event_bytes)
        except OSError as exc:
            return _fail(f"{exc.filename}: {exc.strerror}")
        out.write(render(tally).encode())
    print(
        f"report: {args.output} ({tally.signins} sign-in(s), {len(tally.alerts)} alert(s), "
        f"{len(tally.incidents.incidents)} incident(s))",
        file=sys.stderr,
    )
    return 0


def _write_private(path: str, data: bytes) -> str | None:
    """Write a file that holds personal data (0600 by default); why not, if it failed."""
    try:
        with open_private(path, _settings().file_mode_bits) as out:
            out.write(data)
    except OSError as exc:
        return f"{path}: cannot write: {exc.strerror}"
    return None


def cmd_baseline(args: argparse.Namespace) -> int:
    from pipeline.core.baseline import warm
    from pipeline.core.parse import parse_file

    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        return _fail(str(exc))
    missing = _missing_input(args.paths)
    if missing:
        return _fail(missing)
    records = []
    try:
        for _, data in _read_inputs(args.paths, "baseline"):
            records += parse_file(data).records
    except OSError as exc:
        return _fail(f"{exc.filename}: {exc.strerror}")
    if not (args.output or args.load):
        return _fail("baseline: give -o FILE, --load, or both")
    warmed = warm(records, policy)
    data = b"".join(orjson.dumps({"key": k, "state": v}) + b"\n" for k, v in sorted(warmed.items()))
    if args.output and (failed := _write_private(args.output, data)):
        return _fail(failed)
    if args.load:
        from pipeline.runtime.warmup import WarmupRefused, load

        try:
            load(_settings(), warmed)
        except WarmupRefused as exc:
            return _fail(f"baseline: {exc}")
    where = " into the user_state changelog" if args.load else ""
    print(
        f"baseline: {len(warmed)} users and workloads from {len(records)} records{where}",
        file=sys.stderr,
    )
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.file)
    except PolicyError as exc:
        return _fail(str(exc))
    print(f"# effective policy ({args.file or 'built-in defaults'})")
    print(yaml.safe_dump(policy.effective(), sort_keys=False), end="")
    return 0


def _checkout() -> Path | None:
    """The source checkout this package runs from (an editable install), else None."""
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file() and (root / "tools" / "bench.py").is_file():
        return root
    return None


def cmd_bench(args: argparse.Namespace) -> int:
    """``tools/bench.py`` of the checkout, which owns the options: they are passed through.

    The benchmarks and the generator they feed on are not in the wheel.
    """
    root = _checkout()
    if root is None:
        return _fail(
            "bench: the benchmark lives in the source checkout, not in the installed "
            "package: run `make bench` there"
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    bench: Any = importlib.import_module("tools.bench")
    code: int = bench.main(args.bench_args, prog="signin-risk bench")
    return code


def _settings() -> Settings:
    return Settings()


def cmd_worker(args: argparse.Namespace) -> int:
    from pipeline.runtime import metrics
    from pipeline.runtime.app import create_app

    settings = _settings()
    if args.stage:
        settings = settings.model_copy(update={"stage": args.stage})
    try:
        policy = load_policy(args.policy or settings.policy_file)
    except PolicyError as exc:
        return _fail(str(exc))
    try:
        app = create_app(settings, policy)
    except ValueError as exc:
        return _fail(str(exc))
    _service_logging()
    metrics.serve(settings.metrics_port)
    # Parsing allocates millions of short-lived, acyclic objects: the default gen-0 threshold
    # (700) runs the collector thousands of times a second over the long-lived heap for
    # nothing. Freezing what startup built and collecting rarely gave the worker ~25% more.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    # Faust's worker owns the event loop and signals: SIGTERM and SIGINT stop it, cleanly
    # unless the broker is gone (see _worker_class).
    _worker_class()(app, loglevel="WARNING", quiet=True).execute_from_commandline()
    return 0


def _worker_class() -> type[Any]:
    import faust

    from pipeline.runtime.procs import FORCE_EXIT_S, exit_after

    class Worker(faust.Worker):
        """Faust's stop commits and closes; with the broker gone, aiokafka's fetcher retries
        forever and the stop never ends. Offsets are committed only for acknowledged
        output, so leaving without the last commit loses nothing: it repeats some work."""

        armed = False

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if not self.stdout.isatty():  # its cursor codes would end up in the log file
                self.spinner = None

        def _schedule_shutdown(self, signal: Any) -> None:  # mode's SIGTERM/SIGINT handler
            if not self.armed:
                self.armed = True
                exit_after(FORCE_EXIT_S, "the worker")
            super()._schedule_shutdown(signal)

    return Worker


def cmd_topics(args: argparse.Namespace) -> int:
    from pipeline.runtime.topics import create_topics, describe, topic_specs

    settings = _settings()
    if args.print:
        print(describe(topic_specs(settings)))
        return 0
    created = create_topics(settings)
    print(describe(topic_specs(settings)))
    print(f"created {len(created)} topic(s): {', '.join(created) or 'none (all existed)'}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from pipeline.sources.replay import replay

    if missing := _missing_input(args.paths):
        return _fail(missing)
    try:
        with interrupt_on_signals():
            stats = replay(args.paths, _settings(), rate=args.rate, progress=not args.quiet)
    except Interrupted as exc:
        print(f"signin-risk: replay stopped by {exc} before it finished", file=sys.stderr)
        return exc.exit_code
    print(
        f"replayed {stats.messages} message(s), {stats.bytes} bytes in {stats.seconds:.2f} s",
        file=sys.stderr,
    )
    return 0


def _service_logging() -> None:
    from pipeline.runtime.app import quiet_libraries

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    quiet_libraries()
    for name in ("azure", "uamqp"):  # the SDK logs every link state change at INFO
        logging.getLogger(name).setLevel(logging.WARNING)


def _eventhub_missing(settings: Settings, prefix: str) -> str | None:
    """What to set when neither a connection string nor namespace + hub is configured."""
    secret = getattr(settings, f"{prefix}_connection_string").get_secret_value()
    if secret or (getattr(settings, f"{prefix}_namespace") and getattr(settings, f"{prefix}_name")):
        return None
    env = f"SIGNIN_RISK_{prefix.upper()}"
    return f"set {env}_CONNECTION_STRING, or {env}_NAMESPACE and {env}_NAME"


def cmd_bridge(args: argparse.Namespace) -> int:
    import asyncio

    from pipeline.runtime import metrics
    from pipeline.sources.eventhub import run_bridge

    settings = _settings()
    if missing := _eventhub_missing(settings, "eventhub"):
        return _fail(missing)
    _service_logging()
    metrics.serve(settings.metrics_port)
    try:
        asyncio.run(run_bridge(settings))
    except ValueError as exc:
        return _fail(str(exc))
    return 0


def cmd_forward(args: argparse.Namespace) -> int:
    import asyncio

    from pipeline.runtime import metrics
    from pipeline.sinks import build_sink, sink_config
    from pipeline.sinks.forward import forward

    settings = _settings()
    try:
        config = sink_config(load_policy(args.policy or settings.policy_file), args.sink)
    except (PolicyError, ValueError) as exc:
        return _fail(str(exc))
    if config.type == "eventhub" and (missing := _eventhub_missing(settings, "alerts_eventhub")):
        return _fail(missing)
    _service_logging()
    metrics.serve(settings.metrics_port)

    async def run() -> None:
        sink = build_sink(args.sink, config, settings)
        await forward(settings, sink, config, stream=args.stream)

    try:
        asyncio.run(run())
    except ValueError as exc:
        return _fail(f"sink {args.sink}: {exc}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.runtime.demo import run_demo

    if missing := _missing_input(args.paths):
        return _fail(missing)
    if args.policy:
        try:
            load_policy(args.policy)
        except PolicyError as exc:
            return _fail(str(exc))
    settings = _settings()
    alerts_out = open_private(args.alerts_out, settings.file_mode_bits) if args.alerts_out else None
    try:
        # SIGTERM too: the broker and worker are in sessions of their own, and only the
        # demo's own cleanup stops them.
        with interrupt_on_signals():
            return run_demo(
                args.paths or [str(SAMPLE)],
                args.policy,
                alerts_out,
                args.follow,
                metrics_port=settings.metrics_port,
                cef_out=args.cef_out,
            )
    except Interrupted as exc:
        return exc.exit_code
    finally:
        if alerts_out is not None:
            alerts_out.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="signin-risk", description="Real-time Entra ID sign-in risk detection."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    sub = parser.add_subparsers(dest="command", required=True)

    scan = sub.add_parser("scan", help="detect over files offline; alerts as JSON lines")
    scan.add_argument(
        "paths",
        nargs="*",
        default=[str(SAMPLE)],
        metavar="PATH",
        help="files, directories (every file below) or '-' for stdin; gzip is read as such "
        "(default: the bundled sample)",
    )
    scan.add_argument("--policy", help="policy YAML (default: built-in defaults)")
    scan.add_argument("--rejects", metavar="FILE", help="write rejected records as JSON lines")
    scan.add_argument(
        "--format",
        choices=SCAN_FORMATS,
        default="json",
        help="alerts as the alerts topic carries them (json), as the forwarder's sinks send "
        "them (ocsf, ecs, cef: the file sink's RFC 5424 line) or as the demo's table",
    )
    scan.add_argument("--output", metavar="FILE", help="write alerts here (default: stdout)")
    scan.add_argument(
        "--incidents",
        metavar="FILE",
        help="group alerts into incidents per user or source address: each alert gets its "
        "incident_id, and the incidents go to FILE as JSON lines",
    )
    scan.add_argument(
        "--max-event-bytes",
        type=int,
        default=DEFAULT_MAX_EVENT_BYTES,
        help="reject a JSON line (one delivery) larger than this",
    )
    scan.set_defaults(func=cmd_scan)

    inventory = sub.add_parser(
        "inventory", help="every mail client per user, and whether it complies with the policy"
    )
    inventory.add_argument(
        "paths", nargs="*", default=[str(SAMPLE)], metavar="PATH", help="as for scan"
    )
    inventory.add_argument("--policy", help="policy YAML (default: built-in defaults)")
    inventory.add_argument("--format", choices=("table", "csv", "json"), default="table")
    inventory.add_argument(
        "--non-compliant", action="store_true", help="only clients the policy does not allow"
    )
    inventory.add_argument(
        "--pseudonymize",
        metavar="user,ip",
        help="replace users (and/or addresses) by keyed pseudonyms, as sinks do",
    )
    inventory.add_argument("-o", "--output", metavar="FILE", help="write here (0600), not stdout")
    inventory.set_defaults(func=cmd_inventory)

    report = sub.add_parser("report", help="one self-contained HTML report of charts, offline")
    report.add_argument(
        "paths", nargs="*", default=[str(SAMPLE)], metavar="PATH", help="as for scan"
    )
    report.add_argument("-o", "--output", required=True, metavar="FILE", help="HTML file (0600)")
    report.add_argument("--policy", help="policy YAML (default: built-in defaults)")
    report.add_argument(
        "--pseudonymize",
        metavar="user,ip",
        help="replace users (and/or addresses) by keyed pseudonyms, as sinks do",
    )
    report.add_argument(
        "--max-event-bytes", type=int, default=DEFAULT_MAX_EVENT_BYTES, help="as for scan"
    )
    report.set_defaults(func=cmd_report)

    baseline = sub.add_parser(
        "baseline", help="learn the new-country / workload-new-network baselines from history"
    )
    baseline.add_argument("paths", nargs="+", metavar="PATH", help="exported sign-ins, as for scan")
    baseline.add_argument("--policy", help="policy YAML (default: built-in defaults)")
    baseline.add_argument("-o", "--output", metavar="FILE", help="JSON lines {key, state} (0600)")
    baseline.add_argument(
        "--load",
        action="store_true",
        help="write them into the user_state changelog (settings from env) of a deployment "
        "that has not run yet, before its first worker starts",
    )
    baseline.set_defaults(func=cmd_baseline)

    check = sub.add_parser("check-config", help="validate a policy and print it in effect")
    check.add_argument("file", nargs="?", help="policy YAML (default: built-in defaults)")
    check.set_defaults(func=cmd_check_config)

    # Its options are tools/bench.py's (see cmd_bench): main() passes on what it does not know.
    bench = sub.add_parser(
        "bench",
        help="measure throughput against bare orjson and Kafka (source checkout only)",
        add_help=False,
    )
    bench.set_defaults(func=cmd_bench)

    demo = sub.add_parser("demo", help="embedded broker + worker + replay, alerts live")
    demo.add_argument("paths", nargs="*", metavar="PATH", help="files (default: bundled sample)")
    demo.add_argument("--alerts-out", metavar="FILE", help="write every alert as JSON lines")
    demo.add_argument("--policy", help="policy YAML for the worker")
    demo.add_argument(
        "--cef-out",
        metavar="FILE",
        help="also run a forwarder writing every alert as an RFC 5424 syslog line with CEF",
    )
    demo.add_argument("--follow", action="store_true", help="keep running until Ctrl-C")
    demo.set_defaults(func=cmd_demo)

    worker = sub.add_parser("worker", help="run the streaming pipeline (settings from env)")
    worker.add_argument("--policy", help="policy YAML (default: SIGNIN_RISK_POLICY_FILE)")
    worker.add_argument(
        "--stage",
        choices=STAGES,
        help="run one stage only, to give ingest and detect a process each "
        "(default: SIGNIN_RISK_STAGE, else all)",
    )
    worker.set_defaults(func=cmd_worker)

    bridge = sub.add_parser(
        "bridge", help="read Event Hubs (AMQP) into the raw topic, with checkpoints"
    )
    bridge.set_defaults(func=cmd_bridge)

    fwd = sub.add_parser(
        "forward", help="deliver the alerts (or incidents) topic to a sink, at least once"
    )
    fwd.add_argument(
        "--sink", required=True, metavar="NAME", help="a sink of the policy's sinks, or eventhub"
    )
    fwd.add_argument("--policy", help="policy YAML (default: SIGNIN_RISK_POLICY_FILE)")
    fwd.add_argument(
        "--stream",
        choices=STREAMS,
        default="alerts",
        help="the topic to deliver: every alert version, or every incident version",
    )
    fwd.set_defaults(func=cmd_forward)

    topics = sub.add_parser("topics", help="manage the pipeline's topics")
    topics_sub = topics.add_subparsers(dest="action", required=True)
    create = topics_sub.add_parser("create", help="create every topic and changelog")
    create.add_argument(
        "--print", action="store_true", help="print what would be created instead of creating it"
    )
    create.set_defaults(func=cmd_topics)

    replay = sub.add_parser("replay", help="produce files to the raw topic, envelopes intact")
    replay.add_argument("paths", nargs="+", metavar="PATH")
    replay.add_argument(
        "--rate", type=float, help="sign-ins per second (default: as fast as possible)"
    )
    replay.add_argument("--quiet", action="store_true", help="no progress bar")
    replay.set_defaults(func=cmd_replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        args.bench_args = rest
    elif rest == ["--debug"]:  # also accepted after the command's name
        args.debug = True
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        code: int = args.func(args)
    except Exception as exc:  # one line, not a traceback: see pipeline.runtime.failures
        if args.debug:
            raise
        from pipeline.runtime.failures import explain

        return _fail(explain(exc))
    return code


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("signin-risk")
    except PackageNotFoundError:
        return "unknown (not installed)"


if __name__ == "__main__":
    sys.exit(main())
