"""The ``streamrec`` command line: thin handlers over ``operators`` and ``dataflows``.

Each handler parses nothing itself and imports its module lazily, so ``streamrec --help`` is
fast and one broken subcommand cannot break the others. Errors a user can fix are raised as
:class:`~dataflows.errors.UsageError` and printed as one line, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

from dataflows.errors import UsageError
from dataflows.logs import error_line


def _import(args: argparse.Namespace) -> int:
    from dataflows.progress import tracker
    from operators import importers
    from operators.events import parse_timestamp

    try:
        since = None if args.since is None else parse_timestamp(args.since)
        until = None if args.until is None else parse_timestamp(args.until)
        count = importers.import_dataset(
            args.format,
            Path(args.source),
            Path(args.out),
            since,
            until,
            track=tracker(None, "events read", args.quiet),
        )
    except (ValueError, OSError) as error:
        raise UsageError(str(error)) from None
    print(f"wrote {count.written} events to {args.out} ({count.summary()})", file=sys.stderr)
    return 0


def _generate(args: argparse.Namespace) -> int:
    from dataflows.progress import tracker
    from operators import synthetic

    options = ("users", "items", "events", "seed", "drift_at", "drift_share", "categories", "days")
    given = {name: getattr(args, name) for name in options if getattr(args, name) is not None}
    try:
        config = synthetic.shape_config(args.shape, **given)
    except ValueError as error:
        raise UsageError(str(error)) from None
    try:
        track = tracker(config.events, "events", args.quiet)
        written = synthetic.write_stream(config, Path(args.out), track)
    except OSError as error:
        raise UsageError(str(error)) from None
    drift = synthetic.drift_timestamp(config)
    print(f"wrote {written} events to {args.out} (drift at ts {drift})", file=sys.stderr)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from dataflows import evaluate

    return evaluate.main(args)


def _pretrain(args: argparse.Namespace) -> int:
    from dataflows import evaluate

    return evaluate.pretrain(args)


def _replay(args: argparse.Namespace) -> int:
    from dataflows import replay

    return replay.main(args)


def _run(args: argparse.Namespace) -> int:
    from dataflows import run

    return run.main(args)


def _tail(args: argparse.Namespace) -> int:
    from dataflows import consume

    return consume.main(args)


def _bench(args: argparse.Namespace) -> int:
    from dataflows import bench

    return bench.main(args)


def _smoke(args: argparse.Namespace) -> int:
    from dataflows import smoke

    return smoke.main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamrec",
        description="A real-time recommender that learns while it serves.",
        epilog="example: streamrec replay --evaluate   (then streamrec COMMAND --help)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str,
        handler: Callable[[argparse.Namespace], int],
        help_text: str,
        examples: str,
        progress: bool = False,
    ):
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog="example:\n" + textwrap.indent(examples.strip(), "  "),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=handler)
        if progress:
            sub.add_argument(
                "-q",
                "--quiet",
                action="store_true",
                help="no progress bar (there is none when stderr is not a terminal)",
            )
        return sub

    sub = command(
        "import",
        _import,
        "Convert a public data set to the streamrec event format.",
        """
streamrec import online-retail online_retail.csv retail.jsonl.gz
streamrec import tsv ratings.tsv ratings.jsonl --since 2000-01-01
""",
        progress=True,
    )
    sub.add_argument("format", choices=["online-retail", "otto", "tsv"])
    sub.add_argument("source", help="the data set file (.csv.gz, .jsonl, tab-separated)")
    sub.add_argument("out", help="JSON Lines file to write (.gz compresses)")
    sub.add_argument("--since", help="keep events from this UTC time on (ISO-8601)")
    sub.add_argument("--until", help="keep events before this UTC time (ISO-8601)")

    sub = command(
        "generate",
        _generate,
        "Write a synthetic event stream with known structure.",
        """
streamrec generate --users 100000 --items 10000 --events 2000000 --seed 1 synthetic.jsonl.gz
streamrec generate --shape drift drift.jsonl
""",
        progress=True,
    )
    sub.add_argument("out", help="JSON Lines file to write (.gz compresses)")
    # The shape names are not imported from operators.synthetic, to keep --help fast.
    sub.add_argument(
        "--shape",
        default="sessions",
        help="sessions (default), ratings, drift or cold-start (operators/synthetic.py "
        "describes them); the options below override the shape's own values",
    )
    # No defaults: an option left out keeps the shape's value.
    sub.add_argument("--users", type=int, help="(sessions: 2000)")
    sub.add_argument("--items", type=int, help="(sessions: 1000)")
    sub.add_argument("--events", type=int, help="(sessions: 100000)")
    sub.add_argument("--seed", type=int, help="(0)")
    sub.add_argument("--drift-at", type=float, help="fraction of the stream (0.5)")
    sub.add_argument("--drift-share", type=float, help="share of users who drift (sessions: 0.5)")
    sub.add_argument("--categories", type=int, help="item categories (sessions: 20)")
    sub.add_argument("--days", type=float, help="time span of the stream (sessions: 30)")

    sub = command(
        "evaluate",
        _evaluate,
        "Prequential evaluation of lists, live or emitted.",
        """
streamrec evaluate retail.jsonl.gz --baselines --ablation --plot hr.png
streamrec evaluate drift.jsonl --baselines --plot hr.png --mark 1705363200000=drift
streamrec evaluate retail.jsonl.gz --recs recs.jsonl   # lists written by streamrec replay
streamrec evaluate retail.jsonl.gz --baselines --live   # lists as the live job serves them
""",
        progress=True,
    )
    sub.add_argument("events", help="recorded events (JSON Lines, optionally .gz)")
    sub.add_argument("--k", type=int, default=10)
    sub.add_argument("-c", "--config", help="YAML config (default: the bundled one)")
    sub.add_argument("--recs", help="score these emitted lists instead of running the engine")
    sub.add_argument("--baselines", action="store_true", help="also run the baselines")
    sub.add_argument("--ablation", action="store_true", help="also run the ablations")
    sub.add_argument("--json", action="store_true", help="print one JSON object")
    sub.add_argument("--plot", help="write the sliding-window HR curve to this PNG")
    sub.add_argument(
        "--mark",
        action="append",
        metavar="TIME[=LABEL]",
        help="draw this moment on the plot (ISO-8601 or epoch ms; e.g. the drift time that "
        "streamrec generate prints); repeatable",
    )
    sub.add_argument("--warm-start", help="start streamrec from this pretrained state")
    sub.add_argument(
        "--live",
        action="store_true",
        help="score a returning user against the list a live job run with this config holds "
        "(served when they went idle, refreshed while away: window.close_after_idle_s, "
        "window.refresh_idle_s, state.user_idle_expire_s), not one made when they return",
    )

    sub = command(
        "pretrain",
        _pretrain,
        "Learn from a recorded history; save it as a warm start.",
        """
streamrec pretrain first-half.jsonl.gz --out warm/
streamrec evaluate second-half.jsonl.gz --warm-start warm/
""",
        progress=True,
    )
    sub.add_argument("history", help="recorded events (JSON Lines, optionally .gz)")
    sub.add_argument("--out", required=True, help="directory to write the warm start to")
    sub.add_argument("-c", "--config", help="YAML config (default: the bundled one)")

    sub = command(
        "replay",
        _replay,
        "Run the dataflow over a recorded event file.",
        """
streamrec replay --evaluate                        # the bundled sample, scored
streamrec replay retail.jsonl.gz --out recs.jsonl --dead-letter dead.jsonl -w 2 --json
""",
        progress=True,
    )
    sub.add_argument("events", nargs="?", help="JSON Lines file or directory (default: bundled)")
    sub.add_argument("--out", help="JSON Lines file for the lists (default: summary only)")
    sub.add_argument("--dead-letter", help="JSON Lines file for rejected input, with reasons")
    sub.add_argument(
        "-c", "--config", help="YAML config; its input/output are replaced (default: built-in)"
    )
    sub.add_argument("-w", "--workers", type=int, default=1, help="worker threads per process")
    sub.add_argument(
        "--processes",
        type=int,
        default=1,
        help="run as a local Bytewax cluster of this many processes, each with -w workers "
        "(default 1: this process alone)",
    )
    sub.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    sub.add_argument("--evaluate", action="store_true", help="score the lists after the replay")
    sub.add_argument("--warm-start", help="start from this pretrained state (streamrec pretrain)")

    sub = command(
        "run",
        _run,
        "Run the Kafka-to-Kafka job (wraps python -m bytewax.run).",
        """
streamrec run -c deploy/config.yaml
streamrec run -c deploy/config.yaml --log-format json --log-level warning
streamrec run -i 0 -a "127.0.0.1:2101;127.0.0.1:2102" --metrics-port 3031   # process 0 of 2
""",
    )
    sub.add_argument("-c", "--config", help="YAML config (default: deploy/config.yaml)")
    sub.add_argument("-w", "--workers-per-process", type=int, default=1)
    sub.add_argument("-i", "--process-id", help="this process: a number or a pod name 'name-N'")
    sub.add_argument(
        "-a",
        "--addresses",
        help="every process: 'host:port;host:port', a file of lines, or a template with {i}",
    )
    sub.add_argument("--processes", type=int, help="process count for an -a template with {i}")
    sub.add_argument("--recovery-dir", help="recovery partitions (default: recovery.dir)")
    sub.add_argument("--no-recovery", action="store_true", help="restart from the input's start")
    sub.add_argument("--warm-start", help="start from this pretrained state (streamrec pretrain)")
    sub.add_argument(
        "--metrics-port", type=int, default=3030, help="Prometheus /metrics port (0: off)"
    )
    sub.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="the least severe log lines shown (default info)",
    )
    sub.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="text lines, or one JSON object a line (time, level, logger, message)",
    )

    sub = command(
        "tail",
        _tail,
        "Print the newest list of each user from the output topic.",
        """
streamrec tail -c deploy/config.yaml --user 17850 --follow
""",
    )
    sub.add_argument("-c", "--config", help="YAML config (default: deploy/config.yaml)")
    sub.add_argument("--user", help="only this user's lists")
    sub.add_argument(
        "-f", "--follow", action="store_true", help="then print each new list until Ctrl-C"
    )
    sub.add_argument("--json", action="store_true", help="one JSON object per line")

    sub = command(
        "bench",
        _bench,
        "Measure throughput, latency, memory and recovery cost.",
        """
streamrec bench --quick --plot bench.png
""",
    )
    sub.add_argument("--quick", action="store_true", help="smaller inputs: under 2 minutes")
    sub.add_argument("--json", action="store_true", help="print one JSON object")
    sub.add_argument("--plot", help="write RSS over time and the latency histogram to this PNG")
    sub.add_argument("--events", help="JSON Lines events to bench (default: the bundled sample)")

    sub = command(
        "smoke",
        _smoke,
        "Count events per user through Kafka or a file (smoke test).",
        """
streamrec smoke --brokers 127.0.0.1:9092 --in-topic events --out-topic counts
""",
    )
    sub.add_argument("--input", help="JSON Lines file (default: the bundled sample)")
    sub.add_argument("--output", help="JSON Lines file for the counts (default: stdout)")
    sub.add_argument("--brokers", help="Kafka bootstrap servers; with --in-topic/--out-topic")
    sub.add_argument("--in-topic")
    sub.add_argument("--out-topic")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except UsageError as error:
        message = f"streamrec {args.command}: {error}"
        print(error_line(message, getattr(args, "log_format", "text")), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
