"""``triton-load MODEL``: a headless Locust run against Triton, with Locust's reports and a summary.

    triton-load iris_xgb --protocol grpc --users 16 --duration 20 --out load-report/
    triton-load churn_pipeline --repo model_repository --step-users 4 --step-seconds 5
    triton-load shapes_detect --images photos/ --protocol grpc      # image files as the BYTES input, in turn

Writes into ``--out``: ``locust_stats.csv``, ``locust_stats_history.csv``,
``locust_failures.csv``, ``locust_exceptions.csv`` (Locust's CSV), ``report.html`` (Locust's
HTML report) and ``summary.json`` (requests/s, p50/p95/p99 in ms, failures and their messages).
Locust runs as a child process bounded by ``--duration`` plus a grace period; the target
defaults to 127.0.0.1. Exit status: 0 with requests and no failures, 1 with failures (or users that could not
start, or no request at all), 2 if Locust did not run.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "locustfile.py"
SHAPEFILE = HERE / "shapes.py"
USER_CLASSES = {"http": "TritonHttpUser", "grpc": "TritonGrpcUser"}
DEFAULT_HOSTS = {"http": "http://127.0.0.1:8000", "grpc": "127.0.0.1:8001"}
GRACE_SECONDS = 60


class LoadError(RuntimeError):
    """Locust did not run to the end; the message holds the tail of its output."""


@dataclass(frozen=True)
class LoadOptions:
    """One headless run. ``host`` defaults to the loopback port of ``protocol``."""

    model: str
    protocol: str = "http"
    users: int = 8
    spawn_rate: float = 0.0  # 0: all users at once
    duration: float = 20.0
    host: str = ""
    repo: Path | None = None
    payload: str = "auto"
    rows: int = 1
    json_data: bool = False
    images: str = ""  # a folder or glob of image files: one request's BYTES input each, in turn
    step_users: int = 0  # > 0: the step-load shape
    step_seconds: float = 5.0
    processes: int = 1
    out: Path = Path("load-report")


@dataclass
class LoadSummary:
    """What a run measured (the Aggregated row of Locust's stats) and where its reports are."""

    model: str
    protocol: str
    users: int
    duration_s: float
    requests: int
    failures: int
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    average_ms: float
    max_ms: float
    failure_messages: list[dict] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    reports: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Requests were made, none failed, and no user raised (a bad model name, say)."""
        return self.requests > 0 and self.failures == 0 and not self.exceptions

    def to_json(self) -> dict:
        return asdict(self)


def load_seconds(options: LoadOptions) -> int:
    """How long Locust runs: it takes whole seconds (``-t 6s``); the summary and the printed line say this."""
    return max(1, int(round(options.duration)))


def locust_command(options: LoadOptions) -> list[str]:
    if options.protocol not in USER_CLASSES:
        raise ValueError(f"unknown protocol '{options.protocol}' (choose {' or '.join(USER_CLASSES)})")
    files = str(LOCUSTFILE) + (f",{SHAPEFILE}" if options.step_users > 0 else "")
    out = Path(options.out).resolve()
    command = [
        sys.executable, "-m", "locust",
        "-f", files,
        "--headless",
        "-u", str(options.users),
        "-r", str(options.spawn_rate or options.users),
        "-t", f"{load_seconds(options)}s",
        "--host", options.host or DEFAULT_HOSTS[options.protocol],
        "--csv", str(out / "locust"),
        "--html", str(out / "report.html"),
        "--only-summary",
        "--stop-timeout", "5",
        "--exit-code-on-error", "1",
        "--model", options.model,
        "--payload", options.payload,
        "--rows", str(options.rows),
    ]
    if options.repo:
        command += ["--repo", str(Path(options.repo).resolve())]
    if options.json_data:
        command.append("--json-data")
    if options.images:
        command += ["--images", _absolute(options.images)]
    if options.step_users > 0:
        command += ["--step-users", str(options.step_users), "--step-seconds", str(options.step_seconds)]
    if options.processes > 1:
        command += ["--processes", str(options.processes)]
    command.append(USER_CLASSES[options.protocol])
    return command


def _absolute(pattern: str) -> str:
    """A folder or glob as Locust's process reads it, wherever it runs."""
    return pattern if Path(pattern).is_absolute() else str(Path.cwd() / pattern)


def _float(row: dict, key: str) -> float:
    try:
        return float(row.get(key) or 0.0)
    except ValueError:
        return 0.0


def read_summary(options: LoadOptions) -> LoadSummary:
    """Read Locust's CSV reports back into a :class:`LoadSummary`."""
    out = Path(options.out).resolve()
    stats = out / "locust_stats.csv"
    with open(stats, newline="") as f:
        rows = list(csv.DictReader(f))
    total = next((r for r in rows if r.get("Name") == "Aggregated"), None)
    if total is None:
        raise LoadError(f"{stats}: no Aggregated row (did any user start?)")
    failures = []
    failures_csv = out / "locust_failures.csv"
    if failures_csv.is_file():
        with open(failures_csv, newline="") as f:
            failures = [{"name": r.get("Name", ""), "error": r.get("Error", ""),
                         "occurrences": int(r.get("Occurrences") or 0)} for r in csv.DictReader(f)]
    exceptions = []
    exceptions_csv = out / "locust_exceptions.csv"
    if exceptions_csv.is_file():
        with open(exceptions_csv, newline="") as f:
            exceptions = [f"{r.get('Count', '')}x {r.get('Message', '')}" for r in csv.DictReader(f)]
    return LoadSummary(
        model=options.model,
        protocol=options.protocol,
        users=options.users,
        duration_s=float(load_seconds(options)),
        requests=int(total["Request Count"]),
        failures=int(total["Failure Count"]),
        requests_per_s=_float(total, "Requests/s"),
        p50_ms=_float(total, "50%"),
        p95_ms=_float(total, "95%"),
        p99_ms=_float(total, "99%"),
        average_ms=_float(total, "Average Response Time"),
        max_ms=_float(total, "Max Response Time"),
        failure_messages=failures,
        exceptions=exceptions,
        reports={"stats_csv": str(stats), "html": str(out / "report.html"),
                 "summary": str(out / "summary.json")},
    )


def _stop_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run_load(options: LoadOptions) -> LoadSummary:
    """Run Locust headless (bounded by duration + grace), then write and return the summary."""
    if options.images:  # a pattern that matches nothing is refused here, not by every Locust user
        from .payload import image_files

        image_files(_absolute(options.images))
    out = Path(options.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "locust.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(locust_command(options), stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            process.wait(timeout=load_seconds(options) + GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            raise LoadError(f"Locust ran past {load_seconds(options) + GRACE_SECONDS} s and was stopped; "
                            f"see {log}") from None
        finally:
            # Also on Ctrl-C or any error here: Locust runs in its own session, so nothing else
            # would stop it. The group is the one started above: Locust and its workers.
            if process.poll() is None:
                _stop_group(process)
    if not (out / "locust_stats.csv").is_file():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise LoadError(f"Locust exited with status {process.returncode} and wrote no stats:\n{tail}")
    summary = read_summary(options)
    (out / "summary.json").write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    return summary


def summary_line(summary: LoadSummary) -> str:
    """The one line triton-load prints: the duration is the summary's (the load itself, not
    Locust's start-up and shutdown around it)."""
    return (f"{summary.model} over {summary.protocol}, {summary.users} users, {summary.duration_s:g} s of load: "
            f"{summary.requests} requests, {summary.failures} failures, {summary.requests_per_s:.1f} req/s, "
            f"p50 {summary.p50_ms:.0f} ms, p95 {summary.p95_ms:.0f} ms, p99 {summary.p99_ms:.0f} ms")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="triton-load", description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("model", help="model or ensemble to load")
    p.add_argument("--protocol", "-i", choices=tuple(USER_CLASSES), default="http")
    p.add_argument("--users", "-u", type=int, default=8, help="concurrent users (default 8)")
    p.add_argument("--spawn-rate", "-r", type=float, default=0.0, help="users started per second (default: all at once)")
    p.add_argument("--duration", "-t", type=float, default=20.0, help="seconds (default 20)")
    p.add_argument("--host", default="", help="default http://127.0.0.1:8000 (http) or 127.0.0.1:8001 (grpc)")
    p.add_argument("--repo", type=Path, default=None, help="model repository, for the stored sample inputs")
    p.add_argument("--payload", choices=("auto", "samples", "metadata"), default="auto")
    p.add_argument("--rows", type=int, default=1, help="rows per request (default 1)")
    p.add_argument("--json-data", action="store_true", help="HTTP: JSON tensor data instead of binary")
    p.add_argument("--images", default="", help="a folder or glob of image files (JPEG, PNG...), each sent in turn "
                   "as the model's BYTES input: a detection ensemble <name>_detect, say")
    p.add_argument("--step-users", type=int, default=0, help="> 0: step load, adding this many users per step")
    p.add_argument("--step-seconds", type=float, default=5.0, help="seconds per step (default 5)")
    p.add_argument("--processes", type=int, default=1, help="Locust worker processes (default 1)")
    p.add_argument("--out", type=Path, default=Path("load-report"), help="report folder (default load-report/)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    options = LoadOptions(**{k: v for k, v in vars(args).items()})
    try:
        summary = run_load(options)
    except (LoadError, OSError, ValueError) as exc:
        print(f"triton-load: {exc}", file=sys.stderr)
        return 2
    print(summary_line(summary))
    for failure in summary.failure_messages:
        print(f"  {failure['occurrences']}x {failure['name']}: {failure['error']}")
    for exception in summary.exceptions:
        print(f"  user error: {exception}")
    print(f"reports: {Path(options.out).resolve()}/ (report.html, locust_*.csv, summary.json)")
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
