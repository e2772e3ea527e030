"""``tune-repo REPO``: measure candidate serving configs per model and keep the best (thin CLI)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .report import page, table
from .tune import TritonControl, TuneError, tune_model


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tune-repo", description=__doc__.split(": ", 1)[1])
    p.add_argument("repo", type=Path, help="model repository (what build-repo wrote)")
    p.add_argument("--model", action="append", default=None, metavar="NAME", help="tune only these (repeatable)")
    p.add_argument("--target", choices=("cpu", "gpu"), default="cpu", help="the variant to write: configs/TARGET.pbtxt")
    p.add_argument("--latency-budget-ms", type=float, default=100.0, help="p99 a candidate's throughput must keep (default 100)")
    p.add_argument("--budget-s", type=float, default=60.0, help="seconds of measuring per model (default 60)")
    p.add_argument("--margin", type=float, default=0.10, help="gain the winner needs over the current config (default 0.10)")
    p.add_argument("--url", default=None, help="HTTP host:port of a running Triton with model control (explicit mode)")
    p.add_argument("--admin-key", default=None, help="the triton-admin-key where the repository API is restricted")
    p.add_argument("--write-config-pbtxt", action="store_true", help="also change config.pbtxt (default: only the variant)")
    p.add_argument("--html", type=Path, default=Path("tune-report.html"), help="the report page (default tune-report.html)")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if not (args.repo / "manifest.json").is_file():
        print(f"tune-repo: {args.repo}: not a repository build-repo wrote (no manifest.json)", file=sys.stderr)
        return 2
    from tritonforge.repository import model_folders
    from tritonforge.repository import config as config_file

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
                results.append(tune_model(args.repo, name, server, target=args.target, latency_budget_ms=args.latency_budget_ms,
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
        args.html.write_text(page(results))
        print(f"tune-repo: report in {args.html}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
