"""``tune-repo REPO``: measure candidate serving configs per model and keep the best (thin CLI)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import TuneError
from .measure import TritonControl
from .objective import OBJECTIVES, Objective
from .report import as_json, page, table
from .tune import tune_model


def connections(text: str) -> tuple[int, ...]:
    try:
        found = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': give connection counts separated by commas, e.g. 1,8,32") from None
    if not found or any(c < 1 or c > 1024 for c in found):
        raise argparse.ArgumentTypeError(f"'{text}': give connection counts from 1 to 1024, e.g. 1,8,32")
    return found


def default_out(repo: Path) -> Path:
    """Beside the repository, never the current folder: ``<repo>-tune/``."""
    repo = repo.resolve()
    return repo.parent / f"{repo.name}-tune"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tune-repo", description=__doc__.split(": ", 1)[1])
    p.add_argument("repo", type=Path, help="model repository (what build-repo wrote)")
    p.add_argument("--model", action="append", default=None, metavar="NAME", help="tune only these (repeatable)")
    p.add_argument("--target", choices=("cpu", "gpu"), default="cpu", help="the variant to write: configs/TARGET.pbtxt")
    p.add_argument("--concurrency", type=connections, default=(1, 32), metavar="N,N,...",
                   help="connections each candidate is measured at (default 1,32); one connection is always measured")
    p.add_argument("--objective", choices=OBJECTIVES, default="throughput",
                   help="throughput: the most req/s whose p99 stays within --latency-budget-ms at every listed concurrency "
                        "(default); p99: the lowest p99 at --at connections")
    p.add_argument("--at", type=int, default=None, metavar="N", help="the load of --objective p99 (default the highest --concurrency)")
    p.add_argument("--latency-budget-ms", type=float, default=100.0, help="the p99 every listed concurrency must keep (default 100)")
    p.add_argument("--budget-s", type=float, default=60.0,
                   help="seconds per model, a limit: the search and its final check fit in it (default 60)")
    p.add_argument("--margin", type=float, default=0.10, help="gain the winner needs over the current config (default 0.10)")
    p.add_argument("--url", default=None, help="HTTP host:port of a running Triton with model control (explicit mode)")
    p.add_argument("--admin-key", default=None, help="the triton-admin-key where the repository API is restricted")
    p.add_argument("--write-config-pbtxt", action="store_true", help="also change config.pbtxt (default: only the variant)")
    p.add_argument("--out", type=Path, default=None, metavar="FOLDER",
                   help="where tune-report.html and tune-report.json go (default: REPO-tune/ beside the repository)")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if not (args.repo / "manifest.json").is_file():
        print(f"tune-repo: {args.repo}: not a repository build-repo wrote (no manifest.json)", file=sys.stderr)
        return 2
    from tritonforge.repository import model_folders
    from tritonforge.repository import config as config_file

    try:
        objective = Objective(args.objective, args.concurrency, args.latency_budget_ms, args.at)
    except TuneError as exc:
        print(f"tune-repo: {exc}", file=sys.stderr)
        return 2
    out = args.out or default_out(args.repo)
    names = args.model or [m for m in model_folders(args.repo)
                           if config_file.read(args.repo / m).backend != "python" and config_file.read(args.repo / m).max_batch_size > 0]
    missing = [m for m in names if not (args.repo / m / "config.pbtxt").is_file()]
    if missing:
        print(f"tune-repo: no model {', '.join(missing)} in {args.repo}", file=sys.stderr)
        return 2

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    results, failed = [], []

    def tune_all(server: TritonControl) -> None:
        for name in names:
            try:
                results.append(tune_model(args.repo, name, server, target=args.target, objective=objective,
                                          budget_s=args.budget_s, margin=args.margin, write_config_pbtxt=args.write_config_pbtxt,
                                          progress=say))
                print(table(results[-1]), flush=True)
            except TuneError as exc:
                failed.append(str(exc))
                print(f"tune-repo: {exc}", file=sys.stderr)

    if args.url:
        tune_all(TritonControl(args.url, args.admin_key))
    else:
        if args.target == "gpu":
            print("tune-repo: --target gpu needs --url of a Triton on a GPU host (serve-repo here has no GPU)", file=sys.stderr)
            return 2
        from tritonforge.serving import ServeError, serve

        try:
            with serve(args.repo, control_mode="explicit", load_models=tuple(names), recovery=False) as served:
                tune_all(TritonControl(served.http_url))
        except ServeError as exc:
            print(f"tune-repo: {exc}", file=sys.stderr)
            return 2
    if results:
        out.mkdir(parents=True, exist_ok=True)
        (out / "tune-report.html").write_text(page(results))
        (out / "tune-report.json").write_text(as_json(results))
        print(f"tune-repo: report in {out / 'tune-report.html'} (figures in tune-report.json)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
