"""Loading models through Triton's model-control API: which config file a model is served
from on this host, the override that makes a GPU-only config servable here, and in-place reloads."""
from __future__ import annotations

import threading
import time
from pathlib import Path

from google.protobuf import json_format

from tritonforge.repository import CONFIG_FILE, model_folders
from tritonforge.repository import config as config_file
from tritonforge.repository.layout import variant_path
from tritonforge.serving.errors import ServeError

# A parameter no backend reads: changing it makes Triton reload a model in place (new instances
# first, old ones retired after), which an unchanged load would not do.
GENERATION_PARAMETER = "tritonforge_generation"


def load_error(text: str) -> str:
    """A load refusal as one line: the Python backend appends the failing frames of ``initialize``
    ("\n\nAt:\n  /path/model.py(12): initialize") to whatever it raised; the sentence is before."""
    return " ".join(text.split("\n\nAt:")[0].split()).rstrip(";")


def read_config(model_dir: Path, variant: str | None = None):
    """The config Triton loads for ``model_dir``: ``configs/<variant>.pbtxt`` where the model has
    it (what ``--model-config-name`` picks), else ``config.pbtxt``."""
    try:
        found = config_file.read_variant(model_dir, variant) if variant else None
        return found if found is not None else config_file.read(Path(model_dir) / CONFIG_FILE)
    except config_file.ConfigError as exc:
        raise ServeError(str(exc)) from None


def config_name_for(repo: Path, gpu: bool) -> str | None:
    """The ``--model-config-name`` for this host: ``gpu`` or ``cpu`` where any model of the
    repository has that variant (Triton falls back to config.pbtxt for those that do not)."""
    name = "gpu" if gpu else "cpu"
    has = any(variant_path(Path(repo) / model, name).is_file() for model in model_folders(repo))
    return name if has else None


def cpu_config(config, *, gpu: bool):
    """The config as this host serves it: on a host without GPU, KIND_GPU becomes KIND_CPU.

    Returns (config, changed). KIND_AUTO and KIND_CPU stay as they are. Only repositories
    without a ``cpu`` variant (built before per-hardware configs) still need this.
    """
    from tritonclient.grpc import model_config_pb2 as mc

    if gpu:
        return config, False
    served = mc.ModelConfig()
    served.CopyFrom(config)
    changed = False
    for group in served.instance_group:
        if group.kind == mc.ModelInstanceGroup.KIND_GPU:
            group.kind = mc.ModelInstanceGroup.KIND_CPU
            del group.gpus[:]
            changed = True
    return served, changed


class ModelLoader:
    """Load, reload and unload models of one repository on one server."""

    def __init__(self, repo: Path, client_factory, *, gpu: bool, variant: str | None) -> None:
        self.repo = repo
        self.client = client_factory
        self.gpu = gpu
        self.variant = variant  # the --model-config-name the server runs with
        self.lock = threading.RLock()
        self.busy: set[str] = set()
        self.generation = 0

    def is_ensemble(self, name: str) -> bool:
        try:
            return read_config(self.repo / name).platform == "ensemble"
        except ServeError:
            return False

    def served_config(self, name: str):
        """The config ``name`` is served with, and whether it differs from the file Triton reads."""
        return cpu_config(read_config(self.repo / name, self.variant), gpu=self.gpu)

    def load(self, name: str, *, in_place: bool = False) -> str:
        """Load (or reload, when changed) one model; raises ServeError naming it and the cause.
        ``in_place`` reloads even an unchanged model, keeping it available meanwhile."""
        from tritonclient.utils import InferenceServerException

        if not (self.repo / name / CONFIG_FILE).is_file():
            raise ServeError(f"model '{name}': no {self.repo / name / CONFIG_FILE}")
        config, changed = self.served_config(name)
        if in_place:
            self.generation += 1
            config.parameters[GENERATION_PARAMETER].string_value = str(self.generation)
        kwargs = {}
        if changed or in_place:
            kwargs["config"] = json_format.MessageToJson(config, preserving_proto_field_name=True)
        with self.lock:
            self.busy.add(name)
        try:
            self.client().load_model(name, **kwargs)
        except InferenceServerException as exc:
            raise ServeError(f"model '{name}' failed to load: {load_error(exc.message())}") from None
        finally:
            with self.lock:
                self.busy.discard(name)
        return " (KIND_GPU served as KIND_CPU)" if changed else ""

    def unload(self, name: str, wait: float = 30.0) -> None:
        client = self.client()
        with self.lock:
            self.busy.add(name)
        try:
            client.unload_model(name)
            deadline = time.monotonic() + wait
            while wait > 0 and time.monotonic() < deadline:
                states = {m.name: m.state for m in client.get_model_repository_index().models if m.name == name}
                if states.get(name) not in ("READY", "UNLOADING"):
                    return
                time.sleep(0.05)
        finally:
            with self.lock:
                self.busy.discard(name)

    def is_busy(self, name: str) -> bool:
        with self.lock:
            return name in self.busy

    def states(self) -> dict[tuple[str, str], str]:
        index = self.client().get_model_repository_index()
        return {(m.name, m.version): m.state for m in index.models}
