"""What tune-repo varies: a candidate serving config, what one search tunes (a model, or an
ensemble with its members), and the candidates tried: a coarse sweep, then the neighbours of the best."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from tritonforge.repository import config as config_file

ONNX = "onnxruntime_onnx"
DELAYS_US = (0, 100, 500, 2000)


@dataclass(frozen=True)
class Candidate:
    """One serving config to try."""

    max_batch_size: int
    queue_delay_us: int
    instances: int
    intra_op_threads: int | None = None  # ONNX only; 0 = ONNX Runtime's own pool size
    inter_op_threads: int | None = None

    def describe(self) -> str:
        threads = "" if self.intra_op_threads is None else f", ORT threads {self.intra_op_threads}/{self.inter_op_threads}"
        return (f"max_batch {self.max_batch_size}, delay {self.queue_delay_us} us, "
                f"{self.instances} instance{'s' if self.instances > 1 else ''}{threads}")

    def apply(self, base: mc.ModelConfig) -> mc.ModelConfig:
        config = mc.ModelConfig()
        config.CopyFrom(base)
        config.max_batch_size = self.max_batch_size
        batching = config.dynamic_batching
        batching.max_queue_delay_microseconds = self.queue_delay_us
        sizes = [s for s in batching.preferred_batch_size if s <= self.max_batch_size]
        del batching.preferred_batch_size[:]
        batching.preferred_batch_size.extend(sizes or [self.max_batch_size])
        for group in config.instance_group:
            group.count = self.instances
        if self.intra_op_threads is not None:
            config.parameters["intra_op_thread_count"].string_value = str(self.intra_op_threads)
            config.parameters["inter_op_thread_count"].string_value = str(self.inter_op_threads)
        for warmup in config.model_warmup:
            warmup.batch_size = min(warmup.batch_size, self.max_batch_size)
        return config


@dataclass
class Tunable:
    """What one search tunes: a model, or an ensemble's steps and model together (an ensemble runs at
    its slowest member). Requests go to ``endpoint``; ``members`` are the configs a candidate changes."""

    endpoint: str
    members: dict[str, mc.ModelConfig]

    @property
    def is_ensemble(self) -> bool:
        return len(self.members) > 1 or self.endpoint not in self.members

    def configs(self, candidate: Candidate) -> dict[str, mc.ModelConfig]:
        out = {}
        for name, base in self.members.items():
            if self.is_ensemble:  # the ensemble's max_batch_size binds every member: keep it
                candidate = replace(candidate, max_batch_size=base.max_batch_size)
            member = candidate.apply(base)
            if base.platform != ONNX:
                member.parameters.pop("intra_op_thread_count", None)
                member.parameters.pop("inter_op_thread_count", None)
            out[name] = member
        return out


def tunable_of(repo: Path, model: str, target: str) -> Tunable:
    def config_of(name: str) -> mc.ModelConfig:
        return config_file.read_variant(Path(repo) / name, target) or config_file.read(Path(repo) / name)

    base = config_of(model)
    if base.platform != "ensemble":
        return Tunable(model, {model: base})
    members = {step.model_name: config_of(step.model_name) for step in base.ensemble_scheduling.step}
    return Tunable(model, members)


def candidate_of(config: mc.ModelConfig) -> Candidate:
    threads = config.parameters.get("intra_op_thread_count"), config.parameters.get("inter_op_thread_count")
    onnx = config.platform == ONNX
    return Candidate(config.max_batch_size, config.dynamic_batching.max_queue_delay_microseconds,
                     max(1, sum(g.count or 1 for g in config.instance_group) or 1),
                     int(threads[0].string_value) if onnx and threads[0] else (0 if onnx else None),
                     int(threads[1].string_value) if onnx and threads[1] else (1 if onnx else None))


def coarse(current: Candidate, cores: int) -> list[Candidate]:
    """A few far-apart points: queue delay against instances (and ORT threads)."""
    found = []
    for delay in (0, 500, 2000):
        for instances in (1, 2):
            threads = None if current.intra_op_threads is None else (0 if instances == 1 else max(1, cores // instances))
            found.append(replace(current, queue_delay_us=delay, instances=instances, intra_op_threads=threads))
    return [c for c in dict.fromkeys(found) if c != current]


def neighbours(best: Candidate, cores: int) -> list[Candidate]:
    """The local refinement around the best: the next delay either way, max batch halved or doubled, threads."""
    found = []
    index = min(range(len(DELAYS_US)), key=lambda i: abs(DELAYS_US[i] - best.queue_delay_us))
    for i in (index - 1, index + 1):
        if 0 <= i < len(DELAYS_US):
            found.append(replace(best, queue_delay_us=DELAYS_US[i]))
    for size in (best.max_batch_size // 2, best.max_batch_size * 2):
        if 8 <= size <= 256:
            found.append(replace(best, max_batch_size=size))
    if best.intra_op_threads is not None:
        for threads in {1, cores}:
            if threads != best.intra_op_threads:
                found.append(replace(best, intra_op_threads=threads))
    return found
