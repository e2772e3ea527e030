"""Locust users for a Triton server: KServe v2 over HTTP, and tritonclient over gRPC.

    locust -f loadtests/locustfile.py --headless -u 16 -r 16 -t 20s \\
        --host http://127.0.0.1:8000 --model iris_xgb --repo model_repository TritonHttpUser
    locust -f loadtests/locustfile.py,loadtests/shapes.py ...    # with the step-load shape

- ``TritonHttpUser``: Locust's FastHttpUser POSTs ``/v2/models/<model>/infer`` with binary
  tensor data (``--json-data`` for all-JSON bodies); a non-200 answer is a failure whose text is
  the server's ``error``.
- ``TritonGrpcUser``: tritonclient's gRPC client (made gevent-friendly) and one Locust request
  event per call, the server's message as the exception on failure.
Payloads come from the model's metadata and, with ``--repo``, its stored samples (see
payload.py); with ``--images DIR_OR_GLOB`` each image file is one request's BYTES input, sent in
turn (each user starts at another image). They are built once per process and reused, so the
load measures the server.
``triton-load`` (run.py) wraps this file for headless runs with reports.
"""
from __future__ import annotations

import itertools
import time

# gRPC's C core must use gevent's loop, or each call blocks every user of the process;
# this has to run before any gRPC object exists.
import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

from locust import User, constant, events, task  # noqa: E402
from locust.contrib.fasthttp import FastHttpUser  # noqa: E402

DEFAULT_HTTP_HOST = "http://127.0.0.1:8000"
DEFAULT_GRPC_HOST = "127.0.0.1:8001"

_made: dict[tuple, list] = {}
_users = itertools.count()  # each user starts at another image


@events.init_command_line_parser.add_listener
def _options(parser):
    group = parser.add_argument_group("tritonforge")
    group.add_argument("--model", default="", help="model or ensemble to load (required)")
    group.add_argument("--model-version", default="", help="version (default: the server's choice)")
    group.add_argument("--repo", default="", help="model repository folder, for the stored sample inputs")
    group.add_argument("--payload", choices=("auto", "samples", "metadata"), default="auto",
                       help="samples (samples.npz), metadata (made-up tensors) or auto (default)")
    group.add_argument("--rows", type=int, default=1, help="rows per request for models that batch (default 1)")
    group.add_argument("--json-data", action="store_true", help="HTTP: JSON tensor data instead of binary")
    group.add_argument("--images", default="", help="a folder or glob of image files, sent in turn as the BYTES input")
    group.add_argument("--step-users", type=int, default=4, help="step-load shape: users added per step")
    group.add_argument("--step-seconds", type=float, default=5.0, help="step-load shape: seconds per step")


def _strip_scheme(host: str) -> str:
    return host.split("://", 1)[-1].rstrip("/")


def _payloads(host: str, protocol: str, options) -> list:
    """The model's payloads (one, or one per image file), made from its spec once per process."""
    from pathlib import Path

    from tritonforge.clients.client import TritonClient
    from tritonforge.loadtests.payload import image_payloads, make_payload

    key = (host, protocol, options.model, options.model_version, options.payload, options.rows, options.images)
    if key not in _made:
        if not options.model:
            raise ValueError("no model to load: pass --model NAME")
        with TritonClient(_strip_scheme(host), protocol) as client:
            spec = client.spec(options.model, options.model_version)
        repo = Path(options.repo) if options.repo else None
        _made[key] = (image_payloads(spec, options.images, options.rows) if options.images
                      else [make_payload(spec, repo, source=options.payload, rows=options.rows)])
    return _made[key]


class TritonHttpUser(FastHttpUser):
    """KServe v2 inference over Locust's fast HTTP client."""

    host = DEFAULT_HTTP_HOST
    wait_time = constant(0)

    def on_start(self):
        from tritonforge.loadtests.payload import http_body

        options = self.environment.parsed_options
        self.bodies = [http_body(payload, binary=not options.json_data) for payload in _payloads(self.host, "http", options)]
        self.turn = next(_users)
        version = f"/versions/{options.model_version}" if options.model_version else ""
        self.path = f"/v2/models/{options.model}{version}/infer"
        self.label = f"{options.model} http {'json' if options.json_data else 'binary'}"

    @task
    def infer(self):
        body, headers = self.bodies[self.turn % len(self.bodies)]
        self.turn += 1
        with self.client.post(self.path, data=body, headers=headers, name=self.label,
                              catch_response=True) as response:
            if response.status_code != 200:
                response.failure(_http_error(response))


def _http_error(response) -> str:
    import json

    text = response.text or ""
    try:
        return json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {text[:200] or response.error}"


class TritonGrpcUser(User):
    """KServe v2 inference over tritonclient's gRPC client, reported to Locust per call."""

    host = DEFAULT_GRPC_HOST
    wait_time = constant(0)

    def on_start(self):
        import tritonclient.grpc as grpcclient

        from tritonforge.loadtests.payload import grpc_inputs

        options = self.environment.parsed_options
        self.target = _strip_scheme(self.host)
        self.requests = [grpc_inputs(payload) for payload in _payloads(self.target, "grpc", options)]
        self.turn = next(_users)
        self.model, self.version = options.model, options.model_version
        self.client = grpcclient.InferenceServerClient(self.target)
        self.label = f"{options.model} grpc"

    def on_stop(self):
        self.client.close()

    @task
    def infer(self):
        from tritonclient.utils import InferenceServerException

        inputs, outputs = self.requests[self.turn % len(self.requests)]
        self.turn += 1
        start = time.perf_counter()
        exception, length = None, 0
        try:
            result = self.client.infer(self.model, inputs, model_version=self.version,
                                       outputs=outputs, client_timeout=30)
            length = result.get_response().ByteSize()
        except InferenceServerException as exc:
            exception = Exception(exc.message() or str(exc))
        self.environment.events.request.fire(
            request_type="grpc",
            name=self.label,
            response_time=(time.perf_counter() - start) * 1000.0,
            response_length=length,
            exception=exception,
            context={},
        )
