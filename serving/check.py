"""check-repo: does the served repository answer what the source models answered?

For every model of the repository and each protocol (HTTP, gRPC): the server's config must
contain the file's (every field the file sets, same value; Triton fills the rest with
defaults; KIND_GPU served as KIND_CPU on a host without GPU is accepted and noted), and the
stored samples (``<version>/samples.npz``: ``input/<name>``, ``output/<name>``, ``atol``,
``rtol``) sent to each READY version must come back within the entry's tolerance. An output with
a labels file (a classifier, an ensemble that classifies) is asked for once more with Triton's
classification extension, for every class: each "score:index:label" must name the labels file's
class at that index, with the stored score for it, best first. A detection ensemble (outputs
BOXES, SCORES, CLASSES, COUNT, and NAMES) is judged per image as detections are: the recorded
number of boxes, each recorded box answered by one of its class within 1.5 px, its score within
2e-3 (the build records its sample images and the detections the source export gave for them).

    rows = check_repository(Path("model_repository"), http_url="127.0.0.1:8000",
                            grpc_url="127.0.0.1:8001")
    print(format_table(rows)); ok = all(r.ok for r in rows)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf import json_format

from tritonforge.repository import SAMPLES_FILE, STRING, kserve_type, model_folders, numpy_dtype, read_samples
from tritonforge.repository.config import dtype_of
from tritonforge.serving.errors import ServeError
from tritonforge.serving.loading import read_config

PROTOCOLS = ("http", "grpc")
# A detection ensemble's outputs (ensembles/library/detect.py), and what "the same detections" means
# there (issue 26): another backend (TensorRT, a GPU) moves boxes by fractions of a pixel.
DETECTION_OUTPUTS = ("BOXES", "SCORES", "CLASSES", "COUNT")
BOX_PX, SCORE_TOL = 1.5, 2e-3


@dataclass(frozen=True)
class CheckRow:
    """One line of the report: a model version over one protocol.

    >>> CheckRow("iris", "1", "grpc", ok=True, config="equal", samples="30 rows, max |diff| 1e-07")
    """

    model: str
    version: str
    protocol: str
    ok: bool
    config: str
    samples: str
    checked: bool = True  # False: only the config was compared (a step with no samples of its own)

    @property
    def result(self) -> str:
        return "FAIL" if not self.ok else ("ok" if self.checked else "config-only")


# ---- config comparison ----------------------------------------------------------------
def _is_repeated(field) -> bool:
    flag = getattr(field, "is_repeated", None)
    if flag is not None:
        return bool(flag)
    return field.label == field.LABEL_REPEATED


def config_differences(expected, served, path: str = "") -> list[str]:
    """Fields ``expected`` sets whose value differs in ``served`` (dotted paths)."""
    diffs = []
    for field, value in expected.ListFields():
        name = f"{path}.{field.name}" if path else field.name
        other = getattr(served, field.name)
        is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
        if is_map:
            value_field = field.message_type.fields_by_name["value"]
            for key in value:
                if key not in other:
                    diffs.append(f"{name}[{key!r}] missing")
                elif value_field.message_type is not None:
                    diffs += config_differences(value[key], other[key], f"{name}[{key!r}]")
                elif value[key] != other[key]:
                    diffs.append(f"{name}[{key!r}]: file {value[key]!r}, server {other[key]!r}")
        elif _is_repeated(field):
            if len(value) != len(other):
                diffs.append(f"{name}: file has {len(value)} entries, server {len(other)}")
            elif field.message_type is not None:
                for i, (a, b) in enumerate(zip(value, other)):
                    diffs += config_differences(a, b, f"{name}[{i}]")
            elif list(value) != list(other):
                diffs.append(f"{name}: file {list(value)}, server {list(other)}")
        elif field.message_type is not None:
            diffs += config_differences(value, other, name)
        elif value != other:
            diffs.append(f"{name}: file {value!r}, server {other!r}")
    return diffs


def compare_config(file_config, served_config) -> tuple[bool, str]:
    """(equal, text): file config against the server's, allowing KIND_GPU served as KIND_CPU."""
    from tritonclient.grpc import model_config_pb2 as mc

    expected = mc.ModelConfig()
    expected.CopyFrom(file_config)
    notes = []
    for mine, theirs in zip(expected.instance_group, served_config.instance_group):
        if mine.kind == mc.ModelInstanceGroup.KIND_GPU and theirs.kind == mc.ModelInstanceGroup.KIND_CPU:
            mine.kind = mc.ModelInstanceGroup.KIND_CPU
            del mine.gpus[:]
            notes.append("KIND_GPU served as KIND_CPU")
    diffs = config_differences(expected, served_config)
    if diffs:
        return False, "differs: " + "; ".join(diffs)
    return True, "equal" + (f" ({', '.join(sorted(set(notes)))})" if notes else "")


# ---- samples ------------------------------------------------------------------------
def _as_wire(array: np.ndarray, dtype) -> np.ndarray:
    """A sample array as the client sends it; ``dtype`` in any spelling of repository.dtypes."""
    dtype = numpy_dtype(dtype)
    if dtype == STRING:
        # plain bytes: tritonclient serialises anything else, numpy.bytes_ included, as its str()
        flat = [bytes(v) if isinstance(v, bytes) else str(v).encode("utf-8") for v in array.reshape(-1)]
        out = np.empty(len(flat), dtype=np.object_)
        out[:] = flat
        return out.reshape(array.shape)
    return np.ascontiguousarray(array, dtype=dtype)


def compare_output(served: np.ndarray, expected: np.ndarray, atol: float, rtol: float) -> tuple[bool, str, float]:
    """(ok, why, max abs diff): floats within atol + rtol*|expected|; anything else equal."""
    if served.shape != expected.shape:
        served = served.reshape(expected.shape) if served.size == expected.size else served
        if served.shape != expected.shape:
            return False, f"shape {list(served.shape)}, expected {list(expected.shape)}", float("inf")
    if expected.dtype.kind in "US" or served.dtype == np.object_:
        got = np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in served.reshape(-1)])
        want = np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in expected.reshape(-1)])
        bad = int(np.sum(got != want))
        return bad == 0, (f"{bad} values differ" if bad else ""), 0.0
    if expected.dtype.kind == "f" or served.dtype.kind == "f":
        e = expected.astype(np.float64)
        s = served.astype(np.float64)
        diff = np.abs(s - e)
        bad = int(np.sum(~(diff <= atol + rtol * np.abs(e))))
        worst = float(diff.max()) if diff.size else 0.0
        return bad == 0, (f"{bad} values outside atol {atol:g} rtol {rtol:g} (max |diff| {worst:.3g})" if bad else ""), worst
    bad = int(np.sum(served != expected))
    return bad == 0, (f"{bad} values differ" if bad else ""), 0.0


class _Protocol:
    def __init__(self, protocol: str, url: str):
        self.name = protocol
        if protocol == "http":
            import tritonclient.http as module

            self.client = module.InferenceServerClient(url, connection_timeout=60, network_timeout=120)
        else:
            import tritonclient.grpc as module

            self.client = module.InferenceServerClient(url)
        self.module = module

    def config(self, model: str):
        from tritonclient.grpc import model_config_pb2 as mc

        if self.name == "http":
            return json_format.ParseDict(self.client.get_model_config(model), mc.ModelConfig(), ignore_unknown_fields=True)
        return self.client.get_model_config(model).config

    def ready_versions(self, model: str) -> list[str]:
        index = self.client.get_model_repository_index()
        if self.name == "http":
            rows = [(m.get("name"), m.get("version", ""), m.get("state", "")) for m in index]
        else:
            rows = [(m.name, m.version, m.state) for m in index.models]
        return sorted((v for n, v, s in rows if n == model and s == "READY"), key=lambda v: int(v) if v.isdigit() else 0)

    def infer(self, model: str, version: str, arrays: dict[str, tuple[np.ndarray, str]], outputs: list[str],
              class_count: int = 0):
        """``class_count`` > 0 asks for every output as labels with scores (the classification extension)."""
        inputs = []
        for name, (array, datatype) in arrays.items():
            tensor = self.module.InferInput(name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        requested = [self.module.InferRequestedOutput(n, class_count=class_count) for n in outputs]
        result = self.client.infer(model, inputs, model_version=version, outputs=requested)
        return {n: result.as_numpy(n) for n in outputs}

    def close(self):
        self.client.close()


def check_version(proto: _Protocol, model: str, version: str, config, samples_path: Path) -> tuple[bool, str]:
    samples = read_samples(samples_path)
    types = {io.name: dtype_of(io.data_type) for io in config.input}
    missing = [n for n in types if n not in samples.inputs]
    if missing:
        return False, f"{samples_path}: no sample for input(s) {', '.join(missing)}"
    rows = samples.rows
    mbs = config.max_batch_size
    chunks = [(0, rows)] if mbs <= 0 else [(i, min(i + mbs, rows)) for i in range(0, rows, mbs)]
    out_names = [o.name for o in config.output if o.name in samples.outputs]
    got: dict[str, list] = {n: [] for n in out_names}
    for start, stop in chunks:
        arrays = {
            name: (_as_wire(samples.inputs[name][start:stop] if mbs > 0 else samples.inputs[name], t), kserve_type(t))
            for name, t in types.items()
        }
        answer = proto.infer(model, version, arrays, out_names)
        for n in out_names:
            got[n].append(answer[n])
    if set(DETECTION_OUTPUTS) <= set(out_names):
        return check_detections(got, samples.outputs, rows)
    if samples.gate:  # a reduced-precision entry: judged by its gate, not by atol/rtol
        from tritonforge.verify import Gate

        gate = Gate(samples.gate["min_agreement"], samples.gate["max_error"])
        served = {n: np.concatenate(got[n], axis=0) if len(got[n]) > 1 else got[n][0] for n in out_names}
        verdict = gate.judge({n: samples.outputs[n] for n in out_names}, served, set(samples.gate["classifier_outputs"]))
        text = (f"{rows} rows, {samples.gate['precision']} gate: agreement {verdict['agreement']:.3f} "
                f"(>= {gate.min_agreement}), error {verdict['error']:.3g} (<= {gate.max_error})")
        return verdict["ok"], text
    worst, problems = 0.0, []
    for n in out_names:
        served = np.concatenate(got[n], axis=0) if len(got[n]) > 1 else got[n][0]
        ok, why, diff = compare_output(served, samples.outputs[n], samples.atol, samples.rtol)
        worst = max(worst, diff)
        if not ok:
            problems.append(f"output '{n}': {why}")
    labelled = [o for o in config.output if o.label_filename and o.name in out_names]
    for output in labelled:
        labels = (samples_path.parent.parent / output.label_filename).read_text().splitlines()
        classes = []
        for start, stop in chunks:
            arrays = {name: (_as_wire(samples.inputs[name][start:stop] if mbs > 0 else samples.inputs[name], t), kserve_type(t))
                      for name, t in types.items()}
            classes.append(proto.infer(model, version, arrays, [output.name], class_count=len(labels))[output.name])
        why = compare_classes(np.concatenate(classes, axis=0), samples.outputs[output.name], labels, samples.atol, samples.rtol)
        if why:
            problems.append(f"output '{output.name}' classified: {why}")
    if problems:
        return False, "; ".join(problems)
    classified = f", labels with scores of {', '.join(o.name for o in labelled)}" if labelled else ""
    return True, f"{rows} rows, {len(out_names)} output{'' if len(out_names) == 1 else 's'}, max |diff| {worst:.2g}{classified}"


def _image_rows(outputs: dict[str, list[np.ndarray]]) -> list[tuple]:
    """(boxes, scores, classes, names or None) of each image, unpadded, from the answer's chunks."""
    rows = []
    for index, counts in enumerate(outputs["COUNT"]):
        for row, count in enumerate(np.asarray(counts).reshape(-1)):
            take = lambda name: np.asarray(outputs[name][index])[row, :int(count)]  # noqa: E731
            names = [_text(v) for v in take("NAMES")] if "NAMES" in outputs else None
            rows.append((take("BOXES").reshape(-1, 4).astype(np.float64), take("SCORES").astype(np.float64),
                         take("CLASSES").tolist(), names))
    return rows


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def compare_detections(served: list[tuple], recorded: list[tuple]) -> tuple[str, float]:
    """('' or why, the largest box difference in px): every image's recorded boxes answered, each by
    a box of its class (and name) within BOX_PX and SCORE_TOL, in any order, and no more boxes."""
    if len(served) != len(recorded):
        return f"{len(served)} images answered, {len(recorded)} recorded", float("inf")
    worst = 0.0
    for row, ((boxes, scores, classes, names), (want_boxes, want_scores, want_classes, want_names)) in enumerate(zip(served, recorded)):
        if len(scores) != len(want_scores):
            return f"image {row}: {len(scores)} boxes, recorded {len(want_scores)}", float("inf")
        unused = set(range(len(scores)))
        for i, box in enumerate(want_boxes):
            label = want_names[i] if want_names is not None else f"class {want_classes[i]}"
            same = [j for j in unused if classes[j] == want_classes[i] and (names is None or want_names is None or names[j] == want_names[i])]
            if not same:
                return f"image {row}: no {label} box answered where one was recorded at {np.round(box, 1).tolist()}", float("inf")
            j = min(same, key=lambda k: np.abs(boxes[k] - box).max())
            off, score_off = float(np.abs(boxes[j] - box).max()), abs(scores[j] - want_scores[i])
            if off > BOX_PX or score_off > SCORE_TOL:
                return (f"image {row}: the {label} box recorded at {np.round(box, 1).tolist()} is answered "
                        f"{off:.2f} px off, score {scores[j]:.4f} (recorded {want_scores[i]:.4f})"), off
            unused.discard(j)
            worst = max(worst, off)
    return "", worst


def check_detections(got: dict[str, list[np.ndarray]], recorded: dict[str, np.ndarray], rows: int) -> tuple[bool, str]:
    """A detection ensemble's answers on its recorded images against the recorded detections."""
    served = _image_rows(got)
    expected = _image_rows({name: [value] for name, value in recorded.items() if name in got})
    why, worst = compare_detections(served, expected)
    if why:
        return False, f"detections: {why}"
    boxes = sum(len(scores) for _, scores, _, _ in expected)
    return True, f"{rows} images, {boxes} boxes as recorded (within {BOX_PX} px: max {worst:.2g} px)"


def answers_like_samples(http_url: str, model: str, version: str, config, samples_path: Path) -> tuple[bool, str]:
    """Whether the served ``model`` answers its stored samples within their tolerance (over HTTP),
    and the row text check-repo prints; for build-repo's check of each entry before it is moved in."""
    proto = _Protocol("http", http_url)
    try:
        return check_version(proto, model, version, config, samples_path)
    finally:
        proto.close()


def compare_classes(served: np.ndarray, expected: np.ndarray, labels: list[str], atol: float, rtol: float) -> str:
    """Why Triton's "score:index:label" answers disagree with the expected scores ('' if they agree):
    every label must be the labels file's at its index, every score the expected one for that class,
    best first."""
    expected = expected.reshape(len(expected), -1).astype(np.float64)
    served = served.reshape(len(expected), -1)
    for row, (items, scores) in enumerate(zip(served, expected)):
        previous = np.inf
        for item in items:
            text = item.decode("utf-8") if isinstance(item, bytes) else str(item)
            score, index, label = (text.split(":", 2) + [""])[:3]
            index = int(index)
            if index >= len(labels) or label != labels[index]:
                return f"row {row}: class {index} named {label!r}, the labels file says {labels[index] if index < len(labels) else 'nothing'!r}"
            if abs(float(score) - scores[index]) > atol + rtol * abs(scores[index]):
                return f"row {row}: score {float(score):.6g} for {label!r}, expected {scores[index]:.6g}"
            if float(score) > previous:
                return f"row {row}: classes not best first ({label!r} after a lower score)"
            previous = float(score)
    return ""


def file_rows(repo: Path, models=None) -> list[CheckRow]:
    """One row per entry the manifest records: its files against their recorded sha256, and
    versions on disk the manifest does not know. Needs no server."""
    from tritonforge.repository.integrity import repository_problems

    from tritonforge.repository.manifest import Manifest

    recorded = set(Manifest(repo).data["models"])  # a repository without a manifest has nothing to compare
    rows = []
    for name, problems in repository_problems(Path(repo), [m for m in models or sorted(recorded) if m in recorded]).items():
        detail = problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "") if problems else "every file as built"
        rows.append(CheckRow(name, "-", "files", not problems, "-", detail))
    return rows


def check_repository(repo: Path, *, http_url: str, grpc_url: str, models=None, protocols=PROTOCOLS,
                     config_name: str | None = None) -> list[CheckRow]:
    """``config_name``: the ``--model-config-name`` the server runs with, so that each model is
    compared with the file it loaded (``configs/<name>.pbtxt``, else ``config.pbtxt``)."""
    repo = Path(repo)
    names = list(models) if models else model_folders(repo)
    used_by = _ensembles_using(repo, model_folders(repo))
    rows: list[CheckRow] = []
    for protocol in protocols:
        proto = _Protocol(protocol, http_url if protocol == "http" else grpc_url)
        try:
            for model in names:
                rows += _check_model(proto, repo, model, config_name, used_by.get(model, ()))
        finally:
            proto.close()
    return rows


def _ensembles_using(repo: Path, names: list[str]) -> dict[str, list[str]]:
    used: dict[str, list[str]] = {}
    for name in names:
        try:
            config = read_config(repo / name)
        except ServeError:
            continue
        for step in config.ensemble_scheduling.step:
            used.setdefault(step.model_name, []).append(name)
    return used


def _check_model(proto: _Protocol, repo: Path, model: str, config_name: str | None, ensembles: list[str]) -> list[CheckRow]:
    from tritonclient.utils import InferenceServerException

    try:
        file_config = read_config(repo / model, config_name)
    except ServeError as exc:
        return [CheckRow(model, "-", proto.name, False, str(exc), "-")]
    try:
        versions = proto.ready_versions(model)
        if not versions:
            return [CheckRow(model, "-", proto.name, False, "-", "no READY version on the server")]
        served = proto.config(model)
    except InferenceServerException as exc:
        return [CheckRow(model, "-", proto.name, False, f"server: {exc.message()}", "-")]
    config_ok, config_text = compare_config(file_config, served)
    rows = []
    for version in versions:
        samples = repo / model / version / SAMPLES_FILE
        if not samples.is_file():
            where = f"answers checked through {', '.join(sorted(set(ensembles)))}" if ensembles else f"no {SAMPLES_FILE}"
            rows.append(CheckRow(model, version, proto.name, config_ok, config_text, f"config only: {where}", checked=False))
            continue
        try:
            ok, text = check_version(proto, model, version, served, samples)
        except InferenceServerException as exc:
            ok, text = False, f"request failed: {exc.message()}"
        except (OSError, ValueError, KeyError) as exc:
            ok, text = False, f"{samples}: {exc}"
        rows.append(CheckRow(model, version, proto.name, config_ok and ok, config_text, text))
    return rows


def format_table(rows: list[CheckRow]) -> str:
    header = ("model", "version", "protocol", "result", "config", "samples")
    lines = [header] + [
        (r.model, r.version, r.protocol, r.result, r.config, r.samples) for r in rows
    ]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header) - 1)]
    out = []
    for line in lines:
        cells = [str(c).ljust(w) for c, w in zip(line, widths)] + [str(line[-1])]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)
