"""``triton-infer MODEL --input FILE``: one inference against a Triton server, printed.

    triton-infer iris_xgb --input rows.csv                       # HTTP, 127.0.0.1:8000
    triton-infer digits_cnn --input seven.png -i grpc --top-k 3  # gRPC, 127.0.0.1:8001
    triton-infer churn_pipeline --input rows.json --async --json
    triton-infer shapes_detect --input street.jpg --draw boxes.png  # a detection ensemble's boxes, drawn

Exit status: 0 answered, 1 the server refused (its message is printed as it wrote it),
2 the files could not be read or the server could not be reached.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from tritonforge.clients.client import DEFAULT_URLS, PROTOCOLS, AsyncTritonClient, ServerError, TritonClient
from tritonforge.clients.inputs import InputError, read_inputs
from tritonforge.clients.output import format_json, format_text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="triton-infer", description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("model", help="model (or ensemble) name as the server knows it")
    p.add_argument("--input", "-f", dest="inputs", action="append", type=Path, default=[], metavar="FILE",
                   help=".npy, .npz, .json, .csv or image file (repeatable: files are batched)")
    p.add_argument("--protocol", "-i", choices=PROTOCOLS, default="http", help="default http")
    p.add_argument("--url", "-u", default=None,
                   help=f"host:port (default {DEFAULT_URLS['http']} for http, {DEFAULT_URLS['grpc']} for grpc)")
    p.add_argument("--model-version", default="", help="version to call (default: the server's choice)")
    p.add_argument("--output", "-o", dest="outputs", action="append", default=None, metavar="NAME",
                   help="output to ask for (repeatable; default all)")
    p.add_argument("--top-k", type=int, default=None,
                   help="classes per row for outputs with labels (0: raw scores; default: the ensemble's "
                        "classify top_k, else 3)")
    p.add_argument("--async", dest="asynchronous", action="store_true", help="use the asyncio client")
    p.add_argument("--json-data", action="store_true", help="HTTP: send tensors as JSON, not binary")
    p.add_argument("--json", dest="as_json", action="store_true", help="print the answer as JSON")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    p.add_argument("--draw", type=Path, default=None, metavar="PNG",
                   help="a detection ensemble (<name>_detect): draw the first image's boxes into this file")
    return p


def _run_sync(args):
    with TritonClient(args.url, args.protocol, timeout=args.timeout) as client:
        spec = client.spec(args.model, args.model_version)
        return client.infer(args.model, read_inputs(args.inputs, spec), version=args.model_version, outputs=args.outputs,
                            top_k=spec.top_k(args.top_k), binary=not args.json_data)


async def _run_async(args):
    async with AsyncTritonClient(args.url, args.protocol, timeout=args.timeout) as client:
        spec = await client.spec(args.model, args.model_version)
        return await client.infer(args.model, read_inputs(args.inputs, spec), version=args.model_version,
                                  outputs=args.outputs, top_k=spec.top_k(args.top_k), binary=not args.json_data)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result = asyncio.run(_run_async(args)) if args.asynchronous else _run_sync(args)
    except ServerError as exc:
        # As the server wrote it: no prefix inside the message, nothing reworded.
        print(exc.message, file=sys.stderr)
        return 1
    except InputError as exc:
        print(f"triton-infer: {exc}", file=sys.stderr)
        return 2
    except (ConnectionError, OSError) as exc:
        print(f"triton-infer: cannot reach {args.url or DEFAULT_URLS[args.protocol]} ({args.protocol}): {exc}",
              file=sys.stderr)
        return 2
    print(format_json(result) if args.as_json else format_text(result))
    if args.draw:
        from tritonforge.clients.draw import DrawError, draw_detections

        try:
            drawn = draw_detections(args.inputs[0], result.outputs, args.draw)
        except (DrawError, IndexError) as exc:
            print(f"triton-infer: {exc}" if isinstance(exc, DrawError) else "triton-infer: --draw: give the image with --input", file=sys.stderr)
            return 2
        print(f"drew {drawn} box(es) into {args.draw}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
