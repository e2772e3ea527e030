"""Call a Triton server over HTTP or gRPC, sync or asyncio, with requests built from its metadata.

    with TritonClient("127.0.0.1:8001", protocol="grpc") as client:
        result = client.infer("iris_xgb", {"input": rows}, top_k=2)
        result.classes["probabilities"][0]    # [Class(score=0.95, index=1, label='versicolor'), ...]

    async with AsyncTritonClient("127.0.0.1:8000", protocol="http") as client:
        result = await client.infer("iris_xgb", {"input": rows})

Classifiers: an output whose config names a ``label_filename`` is asked for with Triton's
classification extension (``class_count``), so the server answers labels with scores. Every class
is asked for, so that scores that are not probabilities (a model answering logits) are turned into
probabilities with a softmax over all classes before the top ``top_k`` are kept; such outputs are
named in :attr:`InferResult.softmax`.
A refusal from the server raises :class:`ServerError` carrying the server's own message.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from tritonforge.clients.inputs import conform
from tritonforge.clients.spec import ModelSpec

PROTOCOLS = ("http", "grpc")
DEFAULT_URLS = {"http": "127.0.0.1:8000", "grpc": "127.0.0.1:8001"}


class ServerError(Exception):
    """The server refused or failed a call; ``str()`` is the server's message, unchanged."""

    def __init__(self, message: str, status: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status


def _server_error(exc) -> ServerError:
    status = exc.status()
    return ServerError(exc.message() or str(exc), None if status is None else str(status))


@dataclass(frozen=True)
class Class:
    """One entry of a classification answer: score, class index and label (index as text when unnamed)."""

    score: float
    index: int
    label: str

    @classmethod
    def parse(cls, item) -> "Class":
        # Triton writes "score:index" or "score:index:label"; a label may itself hold ':'.
        text = item.decode("utf-8") if isinstance(item, bytes) else str(item)
        parts = text.split(":", 2)
        label = parts[2] if len(parts) > 2 else parts[1]
        return cls(float(parts[0]), int(parts[1]), label)


@dataclass(frozen=True)
class InferResult:
    """Outputs by name (numpy), and for classified outputs the top classes of each row."""

    model: str
    version: str
    outputs: dict[str, np.ndarray]
    classes: dict[str, list[list[Class]]] = field(default_factory=dict)
    softmax: tuple[str, ...] = ()  # classified outputs whose scores were logits, shown after a softmax


def are_probabilities(rows: list[list[Class]]) -> bool:
    """Whether every row's scores, over all classes, are a probability distribution (Triton prints
    scores to about six digits: the sum is checked to 1e-3)."""
    return all(all(0 <= c.score <= 1 for c in row) and abs(sum(c.score for c in row) - 1) <= 1e-3 for row in rows)


def softmax_rows(rows: list[list[Class]]) -> list[list[Class]]:
    """Each row's scores as the probabilities they mean: a softmax over all of the row's classes
    (order kept: the softmax is monotonic)."""
    done = []
    for row in rows:
        scores = np.array([c.score for c in row], dtype=np.float64)
        exp = np.exp(scores - scores.max())
        probabilities = exp / exp.sum()
        done.append([Class(float(p), c.index, c.label) for p, c in zip(probabilities, row)])
    return done


def _module(protocol: str, asynchronous: bool):
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol '{protocol}' (choose {' or '.join(PROTOCOLS)})")
    if protocol == "http":
        import tritonclient.http as module

        if asynchronous:
            import tritonclient.http.aio as aio

            return module, aio
    else:
        import tritonclient.grpc as module

        if asynchronous:
            import tritonclient.grpc.aio as aio

            return module, aio
    return module, module


class _Requests:
    """What the sync and asyncio clients share: specs, request tensors and answers."""

    def __init__(self, url: str | None, protocol: str, asynchronous: bool):
        self.protocol = protocol
        self.url = url or DEFAULT_URLS.get(protocol, "")
        self._types, self._api = _module(protocol, asynchronous)
        self._specs: dict[tuple[str, str], ModelSpec] = {}

    def _inputs(self, spec: ModelSpec, arrays: Mapping[str, np.ndarray], binary: bool):
        tensors = []
        for name, array in arrays.items():
            try:
                array = conform(array, spec.input(name), spec)
                datatype = spec.input(name).datatype
            except KeyError:  # not an input of the model: the server will say so
                array = np.asarray(array)
                from tritonclient.utils import np_to_triton_dtype

                datatype = np_to_triton_dtype(array.dtype) or "BYTES"
            tensor = self._types.InferInput(name, list(array.shape), datatype)
            if self.protocol == "http":
                tensor.set_data_from_numpy(array, binary_data=binary)
            else:
                tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        return tensors

    def _outputs(self, spec: ModelSpec, names, top_k: int, binary: bool):
        wanted = list(names) if names else [t.name for t in spec.outputs]
        outputs = []
        for name in wanted:
            count = _class_count(spec, name, top_k)
            if self.protocol == "http":
                outputs.append(self._types.InferRequestedOutput(name, binary_data=binary, class_count=count))
            else:
                outputs.append(self._types.InferRequestedOutput(name, class_count=count))
        return outputs, wanted

    def _result(self, spec: ModelSpec, answer, wanted, top_k: int) -> InferResult:
        outputs, classes, softmax = {}, {}, []
        for name in wanted:
            array = answer.as_numpy(name)
            outputs[name] = array
            if top_k and name in spec.labelled_outputs and array is not None:
                rows = array.reshape(array.shape[0], -1) if array.ndim > 1 else array.reshape(1, -1)
                parsed = [[Class.parse(item) for item in row] for row in rows]
                width = spec.output_width(name)
                if width and all(len(row) == width for row in parsed):  # every class of each row: judge the scores
                    if not are_probabilities(parsed):
                        parsed, softmax = softmax_rows(parsed), softmax + [name]
                classes[name] = [row[:top_k] for row in parsed]
        response = answer.get_response()
        version = response["model_version"] if isinstance(response, dict) else response.model_version
        return InferResult(spec.name, str(version), outputs, classes, tuple(softmax))


def _class_count(spec: ModelSpec, name: str, top_k: int) -> int:
    """Classes to ask the server for: all of a labelled output's, so that logits can be told from
    probabilities; ``top_k`` where the output's width is not fixed; 0 for other outputs."""
    if not top_k or name not in spec.labelled_outputs:
        return 0
    return max(spec.output_width(name), top_k)


class TritonClient(_Requests):
    """Synchronous client; ``protocol`` is "http" or "grpc", ``url`` host:port (loopback default)."""

    def __init__(self, url: str | None = None, protocol: str = "http", *, timeout: float = 60.0):
        super().__init__(url, protocol, asynchronous=False)
        self.timeout = timeout
        if protocol == "http":
            self._client = self._api.InferenceServerClient(
                self.url, connection_timeout=timeout, network_timeout=timeout
            )
        else:
            self._client = self._api.InferenceServerClient(self.url)

    def __enter__(self) -> "TritonClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _call(self, method, *args, **kwargs):
        from tritonclient.utils import InferenceServerException

        try:
            return getattr(self._client, method)(*args, **kwargs)
        except InferenceServerException as exc:
            raise _server_error(exc) from None

    def is_ready(self) -> bool:
        try:
            return bool(self._call("is_server_ready"))
        except ServerError:
            return False

    def models(self) -> list[str]:
        """Names of the models the server has loaded (READY)."""
        if self.protocol == "http":
            index = self._call("get_model_repository_index")
            return sorted({m["name"] for m in index if m.get("state") == "READY"})
        index = self._call("get_model_repository_index", as_json=True)
        return sorted({m["name"] for m in index.get("models", []) if m.get("state") == "READY"})

    def spec(self, model: str, version: str = "") -> ModelSpec:
        key = (model, version)
        if key not in self._specs:
            if self.protocol == "http":
                metadata = self._call("get_model_metadata", model, version)
                config = self._call("get_model_config", model, version)
            else:
                metadata = self._call("get_model_metadata", model, version, as_json=True)
                config = self._call("get_model_config", model, version, as_json=True)
            self._specs[key] = ModelSpec.from_server(metadata, config)
        return self._specs[key]

    def infer(self, model: str, inputs: Mapping[str, np.ndarray], *, version: str = "",
              outputs=None, top_k: int = 0, binary: bool = True) -> InferResult:
        """Run ``model`` on ``inputs`` (arrays by input name); ``top_k`` > 0 classifies labelled outputs."""
        spec = self.spec(model, version)
        tensors = self._inputs(spec, inputs, binary)
        requested, wanted = self._outputs(spec, outputs, top_k, binary)
        answer = self._call("infer", model, tensors, model_version=version, outputs=requested,
                            **({"client_timeout": self.timeout} if self.protocol == "grpc" else {}))
        return self._result(spec, answer, wanted, top_k)


class AsyncTritonClient(_Requests):
    """The asyncio twin of :class:`TritonClient` (tritonclient's ``http.aio`` and ``grpc.aio``)."""

    def __init__(self, url: str | None = None, protocol: str = "http", *, timeout: float = 60.0):
        super().__init__(url, protocol, asynchronous=True)
        self.timeout = timeout
        if protocol == "http":
            self._client = self._api.InferenceServerClient(self.url, conn_timeout=timeout)
        else:
            self._client = self._api.InferenceServerClient(self.url)

    async def __aenter__(self) -> "AsyncTritonClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self._client.close()

    async def _call(self, method, *args, **kwargs):
        from tritonclient.utils import InferenceServerException

        try:
            return await getattr(self._client, method)(*args, **kwargs)
        except InferenceServerException as exc:
            raise _server_error(exc) from None

    async def spec(self, model: str, version: str = "") -> ModelSpec:
        key = (model, version)
        if key not in self._specs:
            extra = {"as_json": True} if self.protocol == "grpc" else {}
            metadata = await self._call("get_model_metadata", model, version, **extra)
            config = await self._call("get_model_config", model, version, **extra)
            self._specs[key] = ModelSpec.from_server(metadata, config)
        return self._specs[key]

    async def infer(self, model: str, inputs: Mapping[str, np.ndarray], *, version: str = "",
                    outputs=None, top_k: int = 0, binary: bool = True) -> InferResult:
        spec = await self.spec(model, version)
        tensors = self._inputs(spec, inputs, binary)
        requested, wanted = self._outputs(spec, outputs, top_k, binary)
        extra = {"client_timeout": self.timeout} if self.protocol == "grpc" else {}
        answer = await self._call("infer", model, tensors, model_version=version, outputs=requested, **extra)
        return self._result(spec, answer, wanted, top_k)
