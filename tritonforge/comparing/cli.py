"""``compare-models A B [C ...] --data FILE``: the same rows to every model, side by side (thin CLI).

    compare-models cancer_xgb cancer_keras --data rows.csv --target diagnosis            # 127.0.0.1:8000 (and :8001)
    compare-models cancer_xgb cancer_keras --data rows.csv --repo model_repository -i grpc
    compare-models m:1 m:2 --data rows.csv --max-disagreement 0.01 --min-speedup 0.9 --json out.json

Exit status: 0 compared (and every candidate met the thresholds given), 1 a candidate missed a
threshold, 2 the command could not compare (a model that is not served, a bad data file, a
server it cannot reach): one line saying why.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tritonforge.clients import ServerError, TritonClient
from tritonforge.clients.client import DEFAULT_URLS, PROTOCOLS

from .answers import CompareError, Entry
from .compare import CompareOptions, Thresholds, compare_models
from .cost import MAX_CONCURRENCY, MAX_SECONDS
from .report import text, write_html, write_json
from .rows import DataError, read_data

PROG = "compare-models"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("models", nargs="+", metavar="MODEL", help="name or name:version; the first is the baseline")
    p.add_argument("--data", required=True, type=Path, metavar="FILE",
                   help="rows: CSV, JSON rows, JSON lines, .npz, or a folder of images")
    p.add_argument("--target", default=None, metavar="COLUMN", help="the column (field, array) with the true answer")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--url", "-u", default=None,
                       help=f"a running server, host:port (default {DEFAULT_URLS['http']}, {DEFAULT_URLS['grpc']} for grpc)")
    where.add_argument("--repo", type=Path, default=None, help="serve this repository for the comparison (free ports, stopped after)")
    p.add_argument("--protocol", "-i", choices=PROTOCOLS, default="http", help="how the rows are sent (default http)")
    p.add_argument("--cost-protocol", choices=("http", "grpc", "both"), default="both",
                   help="what the cost is measured over: wrk over HTTP, h2load over gRPC, or both (default)")
    p.add_argument("--load-url", default=None, metavar="HOST:PORT",
                   help="HTTP address wrk loads (default: --url over http, 127.0.0.1:8000 without --url, the served repository with --repo)")
    p.add_argument("--grpc-load-url", default=None, metavar="HOST:PORT",
                   help="gRPC address h2load loads (default: --url over grpc, 127.0.0.1:8001 without --url, the served repository with --repo)")
    p.add_argument("--concurrency", type=int, default=8, help=f"wrk connections, 1-{MAX_CONCURRENCY} (default 8)")
    p.add_argument("--duration", type=float, default=3.0, help=f"seconds of load per model, at most {MAX_SECONDS:g} (default 3)")
    p.add_argument("--rows-per-request", type=int, default=1, help="rows in each load request (default 1)")
    p.add_argument("--no-cost", action="store_true", help="compare answers only, measure no throughput")
    p.add_argument("--max-disagreement", type=float, default=None, metavar="SHARE",
                   help="most rows a candidate may answer differently, 0-1 (0.02 = 2%%)")
    p.add_argument("--min-speedup", type=float, default=None, metavar="RATIO",
                   help="least throughput of a candidate over the baseline's (0.9 = at most 10%% slower)")
    p.add_argument("--max-quality-drop", type=float, default=None, metavar="DROP",
                   help="most accuracy a candidate may lose (0.01 = one point), or relative MAE growth for regressors")
    p.add_argument("--json", dest="json_path", type=Path, default=None, metavar="FILE", help="write the report as JSON")
    p.add_argument("--html", dest="html_path", type=Path, default=None, metavar="FILE", help="write the report as HTML with plots")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    return p


def _usage_errors(args) -> str | None:
    if args.max_disagreement is not None and not 0 <= args.max_disagreement <= 1:
        return f"--max-disagreement {args.max_disagreement:g}: give a share from 0 to 1 (0.02 = 2%)"
    if len(args.models) < 2:
        return "give at least two models: the baseline first, then the candidates"
    if args.rows_per_request < 1:
        return f"--rows-per-request {args.rows_per_request}: give 1 or more"
    if not args.no_cost and not 1 <= args.concurrency <= MAX_CONCURRENCY:
        return f"--concurrency {args.concurrency}: give 1 to {MAX_CONCURRENCY}"
    if not args.no_cost and not 0 < args.duration <= MAX_SECONDS:
        return f"--duration {args.duration:g}: give more than 0 and at most {MAX_SECONDS:g} seconds"
    if args.repo is not None and not (args.repo / "config.pbtxt").exists() and not args.repo.is_dir():
        return f"{args.repo}: no such repository"
    return None


def _members(repo: Path, names: list[str]) -> list[str]:
    """The named models and, for ensembles, the models they call (loaded with them)."""
    from tritonforge.repository import config as config_file

    wanted = []
    for name in names:
        wanted.append(name)
        config = config_file.read(repo / name)
        wanted += [step.model_name for step in config.ensemble_scheduling.step]
    return list(dict.fromkeys(wanted))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def fail(message: str) -> int:
        print(f"{PROG}: {message}", file=sys.stderr)
        return 2

    def say(message: str) -> None:
        if not args.quiet:
            print(f"{PROG}: {message}", file=sys.stderr, flush=True)

    problem = _usage_errors(args)
    if problem:
        return fail(problem)
    try:
        entries = [Entry.parse(m) for m in args.models]
        if args.repo is not None:
            missing = [e.name for e in entries if not (args.repo / e.name / "config.pbtxt").is_file()]
            if missing:
                return fail(f"no model {', '.join(repr(m) for m in dict.fromkeys(missing))} in {args.repo}")
        options = CompareOptions(args.concurrency, args.duration, args.rows_per_request, not args.no_cost,
                                 Thresholds(args.max_disagreement, args.min_speedup, args.max_quality_drop),
                                 ("http", "grpc") if args.cost_protocol == "both" else (args.cost_protocol,))
        with read_data(args.data, args.target) as data:
            if args.repo is None:
                url = args.url or DEFAULT_URLS[args.protocol]
                result = _compare(url, args.protocol, entries, data, _load_urls(args, url), options, say)
            else:
                from tritonforge.serving import ServeError, serve

                say(f"serving {args.repo} on 127.0.0.1 (free ports)")
                try:
                    with serve(args.repo, control_mode="explicit", load_models=tuple(_members(args.repo, [e.name for e in entries])),
                               recovery=False, http_port=0, grpc_port=0, metrics_port=0) as server:
                        url = server.http_url if args.protocol == "http" else server.grpc_url
                        load_urls = {"http": args.load_url or server.http_url, "grpc": args.grpc_load_url or server.grpc_url}
                        result = _compare(url, args.protocol, entries, data, load_urls, options, say)
                except ServeError as exc:
                    return fail(str(exc).splitlines()[0])
    except (CompareError, DataError) as exc:
        return fail(str(exc))
    print(text(result), flush=True)
    for path, write in ((args.json_path, write_json), (args.html_path, write_html)):
        if path is not None:
            write(result, path)
            say(f"report in {path}")
    return 0 if result.passed else 1


def _load_urls(args, url: str) -> dict[str, str | None]:
    """Where each protocol's cost is measured: the address given, else --url over its own protocol,
    else the local default when no --url was given (a remote server's other port is never guessed)."""
    given = {"http": args.load_url, "grpc": args.grpc_load_url}
    return {p: given[p] or (url if p == args.protocol else (DEFAULT_URLS[p] if args.url is None else None))
            for p in ("http", "grpc")}


def _compare(url, protocol, entries, data, load_urls, options, say):
    try:
        with TritonClient(url, protocol) as client:
            if not client.is_ready():
                raise CompareError(f"no ready Triton server at {url} ({protocol}): start serve-repo, or give --url or --repo")
            return compare_models(client, entries, data, where=f"{url} ({protocol})", http_url=load_urls["http"],
                                  grpc_url=load_urls["grpc"], options=options, progress=say)
    except ServerError as exc:
        raise CompareError(f"{url} ({protocol}): {exc.message.splitlines()[0] if exc.message else exc}") from None
    except (ConnectionError, OSError) as exc:
        raise CompareError(f"cannot reach {url} ({protocol}): {exc}") from None


if __name__ == "__main__":
    sys.exit(main())
