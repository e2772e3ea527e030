"""Console scripts: ``serve-repo`` and ``check-repo`` (thin layers over server.py and check.py)."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from tritonforge.fleet import FleetError, is_bucket_url
from tritonforge.fleet.cli import add_bucket_arguments, follow_bucket
from tritonforge.serving.errors import ServeError
from tritonforge.serving.server import CONTROL_MODES, DEFAULT_CACHE_BYTES, Server


def _serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="serve-repo",
        description="Serve a tritonforge model repository on the tritonserver bundled with "
        "nvidia-pytriton (CPU, no Docker).",
    )
    p.add_argument("repo", help="model repository folder (what build-repo wrote), or s3://bucket/prefix (what publish-repo wrote)")
    p.add_argument("--address", default="127.0.0.1", help="address for HTTP, gRPC and metrics (default 127.0.0.1)")
    p.add_argument("--http-port", type=int, default=8000, help="0 picks a free port (default 8000)")
    p.add_argument("--grpc-port", type=int, default=8001, help="0 picks a free port (default 8001)")
    p.add_argument("--metrics-port", type=int, default=8002, help="0 picks a free port (default 8002)")
    p.add_argument("--model-control-mode", choices=CONTROL_MODES, default="poll",
                   help="none: load all at start; poll: also follow the repository; "
                   "explicit: load only --load-model, clients load the rest (default poll)")
    p.add_argument("--repository-poll-secs", type=float, default=2.0, help="poll interval (default 2)")
    p.add_argument("--load-model", action="append", default=None, metavar="NAME",
                   help="model to load at start (repeatable; '*' for all in explicit mode)")
    p.add_argument("--ready-timeout", type=float, default=180.0, help="seconds to wait for readiness")
    p.add_argument("--no-verify", action="store_true",
                   help="serve entries whose files differ from the sha256 the manifest recorded (default: refuse to start)")
    p.add_argument("--log-file", type=Path, default=None, help="keep tritonserver's log here")
    p.add_argument("--log-verbose", type=int, default=0, help="tritonserver --log-verbose level")
    p.add_argument("--no-recovery", action="store_true",
                   help="do not reload a model whose backend process died")
    p.add_argument("--model-config-name", default="auto", metavar="NAME",
                   help="load configs/NAME.pbtxt where a model has it (default auto: cpu, or gpu on a GPU host, "
                   "when the repository has those variants); 'none' for config.pbtxt only")
    p.add_argument("--cache-size", type=int, default=DEFAULT_CACHE_BYTES, metavar="BYTES",
                   help=f"Triton's local response cache, for models with response_cache enabled (default {DEFAULT_CACHE_BYTES}; 0 = off)")
    add_bucket_arguments(p)
    return p


def serve_main(argv=None) -> int:
    args = _serve_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="serve-repo: %(message)s")
    stop = threading.Event()

    def _on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    bucket = None
    if is_bucket_url(args.repo):  # served from a local folder that follows the bucket (fleet/mirror.py)
        try:
            bucket = follow_bucket(args.repo, sync_dir=args.sync_dir, every=args.sync_secs, endpoint_url=args.endpoint_url)
        except FleetError as exc:
            print(f"serve-repo: {exc}", file=sys.stderr)
            return 1
        print(f"serve-repo: following {args.repo} in {bucket.local} (every {args.sync_secs:g} s)", flush=True)
    try:
        return _serve(args, stop, bucket.local if bucket else Path(args.repo))
    finally:
        if bucket is not None:
            bucket.stop()


def _serve(args, stop: threading.Event, repo: Path) -> int:
    if not args.no_verify:
        refused = _tampered(repo)
        if refused:
            for line in refused:
                print(f"serve-repo: refusing to serve {line}", file=sys.stderr)
            print("serve-repo: the files differ from what build-repo recorded: rebuild, or pass --no-verify to serve them anyway",
                  file=sys.stderr)
            return 2
    server = Server(
        repo,
        address=args.address,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        control_mode=args.model_control_mode,
        poll_secs=args.repository_poll_secs,
        load_models=tuple(args.load_model) if args.load_model else None,
        ready_timeout=args.ready_timeout,
        recovery=not args.no_recovery,
        log_verbose=args.log_verbose,
        log_file=args.log_file,
        config_name=None if args.model_config_name == "none" else args.model_config_name,
        cache_bytes=args.cache_size,
    )
    try:
        server.start()
    except ServeError as exc:
        print(f"serve-repo: {exc}", file=sys.stderr)
        return 1
    try:
        ready = sorted({name for (name, _), state in server.model_states().items() if state == "READY"})
        print(
            f"serve-repo: serving {server.repo} ({args.model_control_mode} mode): "
            f"HTTP {server.http_url}, gRPC {server.grpc_url}, metrics {server.metrics_url}; "
            f"{len(ready)} models ready: {', '.join(ready) or '-'}. Ctrl-C to stop.",
            flush=True,
        )
        while not stop.wait(0.5):
            if server.process.poll() is not None:
                print(
                    f"serve-repo: tritonserver exited with status {server.process.returncode}; "
                    f"log tail:\n{server.log_tail()}",
                    file=sys.stderr,
                )
                return 1
        print("serve-repo: stopping", flush=True)
        return 0
    finally:
        server.stop()


def _tampered(repo: Path) -> list[str]:
    """One line per entry whose files are not what build-repo recorded (a repository without a
    manifest was not built by tritonforge and has nothing to compare)."""
    from tritonforge.repository.integrity import repository_problems

    return [f"'{name}': {problems[0]}" for name, problems in repository_problems(repo).items() if problems]


def _check_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="check-repo",
        description="Check that a served repository answers its stored samples within tolerance, "
        "over HTTP and gRPC, and that the server's configs equal the files.",
    )
    p.add_argument("repo", type=Path, help="model repository folder")
    p.add_argument("--url", default=None,
                   help="HTTP host:port of a running server; without it check-repo starts serve-repo itself")
    p.add_argument("--grpc-url", default=None, help="gRPC host:port (default: --url's host, port + 1)")
    p.add_argument("--model", action="append", default=None, metavar="NAME", help="check only these (repeatable)")
    p.add_argument("--protocol", choices=("http", "grpc", "both"), default="both")
    p.add_argument("--ready-timeout", type=float, default=300.0)
    p.add_argument("--model-config-name", default=None, metavar="NAME",
                   help="with --url: the --model-config-name that server runs with (compare configs/NAME.pbtxt)")
    p.add_argument("--hashes-only", action="store_true",
                   help="only compare every entry's files with the sha256 the manifest recorded (no server)")
    return p


def check_main(argv=None) -> int:
    from tritonforge.repository.layout import model_folders
    from tritonforge.serving.check import PROTOCOLS, check_repository, file_rows, format_table

    args = _check_parser().parse_args(argv)
    protocols = PROTOCOLS if args.protocol == "both" else (args.protocol,)
    if not args.repo.is_dir():
        print(f"check-repo: {args.repo}: no such model repository", file=sys.stderr)
        return 2
    files = file_rows(args.repo, args.model)
    if args.hashes_only:
        print(format_table(files))
        print(summary(files))
        return 0 if files and all(r.ok for r in files) else 1
    try:
        if args.url:
            grpc_url = args.grpc_url
            if grpc_url is None:
                host, _, port = args.url.rpartition(":")
                grpc_url = f"{host}:{int(port) + 1}"
            rows = check_repository(args.repo, http_url=args.url, grpc_url=grpc_url,
                                    models=args.model, protocols=protocols, config_name=args.model_config_name)
        else:
            with Server(args.repo, control_mode="explicit", load_models=(), ready_timeout=args.ready_timeout) as server:
                loaded, refused = load_each(server, args.model or model_folders(args.repo), protocols)
                rows = refused + (check_repository(args.repo, http_url=server.http_url, grpc_url=server.grpc_url,
                                                   models=loaded, protocols=protocols, config_name=server.config_name)
                                  if loaded else [])
    except ServeError as exc:
        print(f"check-repo: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a server that cannot be reached: one line, no traceback
        message = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
        print(f"check-repo: {type(exc).__name__}: {message}", file=sys.stderr)
        return 2
    # Entries whose files are exact get one line below the table; the others are failed rows in it.
    rows = [r for r in files if not r.ok] + rows
    print(format_table(rows))
    if files:
        print(f"check-repo: files: {sum(r.ok for r in files)}/{len(files)} entries exactly as the manifest records them")
    if not rows:
        print("check-repo: no models to check", file=sys.stderr)
        return 1
    print(summary(rows))
    return 0 if all(r.ok for r in rows) else 1


def load_each(server, names, protocols) -> tuple[list[str], list]:
    """Load every entry on its own, so that one that Triton refuses is a failed row and the
    others are still checked; the row says why in one line, with no server-side path."""
    from tritonforge.serving.check import CheckRow

    names = sorted(names, key=lambda n: (server.loader.is_ensemble(n), n))  # ensembles after their steps
    loaded, refused = [], []
    for name in names:
        try:
            server.load(name)
            loaded.append(name)
        except ServeError as exc:
            first = str(exc).splitlines()[0]
            refused += [CheckRow(name, "-", protocol, False, "-", f"not loaded: {_without_paths(first)}") for protocol in protocols]
    return loaded, refused


def _without_paths(text: str) -> str:
    import re

    return re.sub(r"(/[^\s:'\"]+)+/", "", text)


def summary(rows) -> str:
    """Rows that sent samples count as checks; rows that only compared a config are counted apart."""
    sampled = [r for r in rows if r.checked or not r.ok]
    passed = sum(r.ok for r in sampled)
    config_only = len(rows) - len(sampled)
    tail = f"; {config_only} config only (steps: their answers are checked through their ensembles)" if config_only else ""
    return f"check-repo: {passed}/{len(sampled)} checks passed{tail}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(serve_main())
