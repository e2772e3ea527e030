"""Ensemble configs: steps chained by tensor name, checked before anything is written.

Triton's rules, checked here: every step input is fed by the ensemble's input or an earlier
step's output of the same dtype and dims; the ensemble's ``max_batch_size`` is no larger than
any step's; ensembles take no ``instance_group``.

An ensemble's outputs are its last stage's, ``label_filename`` included: Triton reads that file
from the ensemble's own folder (the build writes the model's labels there), so the ensemble
answers labels with scores through the classification extension exactly as its model does.
"""
from __future__ import annotations

from tritonclient.grpc import model_config_pb2 as mc

from tritonforge.errors import BuildError
from tritonforge.repository import TensorSpec
from tritonforge.repository.config import data_type as triton_type

from .library import STEP_PARAMETER, TOP_K_PARAMETER, Classification, StepModel, settings_json

STEP_QUEUE_DELAY_US = 100


def _add_tensor(message, spec: TensorSpec, batched: bool) -> None:
    message.name = spec.name
    message.data_type = triton_type(spec.dtype)
    dims = list(spec.shape[1:] if batched else spec.shape)
    message.dims.extend(dims or [1])


def step_config(name: str, step: StepModel, max_batch_size: int) -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, backend="python", max_batch_size=max_batch_size)
    for spec in step.inputs:
        _add_tensor(config.input.add(), spec, max_batch_size > 0)
    for spec in step.outputs:
        _add_tensor(config.output.add(), spec, max_batch_size > 0)
    if max_batch_size > 0:
        # Several requests per execute() is what lets a step decode a whole batch in one pass.
        config.dynamic_batching.max_queue_delay_microseconds = STEP_QUEUE_DELAY_US
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    config.parameters[STEP_PARAMETER].string_value = settings_json(step)
    return config


def ensemble_config(name: str, chain: list[mc.ModelConfig], classification: Classification | None = None) -> mc.ModelConfig:
    """Wire ``chain`` (configs in order) by tensor names into one ensemble config, after checking it.

    With ``classification`` the ensemble answers only the scores output (with its labels file) and
    records the default class count as the ``tritonforge_top_k`` parameter."""
    max_batch_size = min(c.max_batch_size for c in chain)
    config = mc.ModelConfig(name=name, platform="ensemble", max_batch_size=max_batch_size)
    config.input.extend(chain[0].input)
    outputs = chain[-1].output
    if classification:
        outputs = [o for o in outputs if o.name == classification.output.name]
        if not outputs or not outputs[0].label_filename:
            raise BuildError(f"ensemble '{name}': output '{classification.output.name}' has no labels file to classify with")
        config.parameters[TOP_K_PARAMETER].string_value = str(classification.top_k)
    config.output.extend(outputs)
    # Triton refuses an ensemble tensor that nothing reads ("ensemble tensor 'label' is unused"):
    # map only the outputs that a later step or the ensemble's own outputs consume.
    consumed = {t.name for stage in chain[1:] for t in stage.input} | {t.name for t in config.output}
    for stage in chain:
        step = config.ensemble_scheduling.step.add(model_name=stage.name, model_version=-1)
        for tensor in stage.input:
            step.input_map[tensor.name] = tensor.name
        for tensor in stage.output:
            if tensor.name in consumed:
                step.output_map[tensor.name] = tensor.name
    check(config, {c.name: c for c in chain})
    return config


def check(ensemble: mc.ModelConfig, members: dict[str, mc.ModelConfig]) -> None:
    """Refuse an ensemble whose steps disagree; the message names the step and the tensor."""
    if ensemble.instance_group:
        raise BuildError(f"ensemble '{ensemble.name}': ensembles take no instance_group")
    available = {t.name: (t.data_type, list(t.dims), "ensemble input") for t in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        member = members[step.model_name]
        if ensemble.max_batch_size > member.max_batch_size:
            raise BuildError(f"ensemble '{ensemble.name}': max_batch_size {ensemble.max_batch_size} exceeds "
                             f"step '{member.name}' ({member.max_batch_size})")
        inputs = {t.name: t for t in member.input}
        for step_tensor, ensemble_tensor in step.input_map.items():
            if ensemble_tensor not in available:
                raise BuildError(f"ensemble '{ensemble.name}': step '{member.name}' input '{step_tensor}' is fed by "
                                 f"'{ensemble_tensor}', which no earlier step produces")
            dtype, dims, origin = available[ensemble_tensor]
            wanted = inputs[step_tensor]
            if dtype != wanted.data_type or dims != list(wanted.dims):
                raise BuildError(
                    f"ensemble '{ensemble.name}': step '{member.name}' input '{step_tensor}' expects "
                    f"{mc.DataType.Name(wanted.data_type)} {list(wanted.dims)}, {origin} gives "
                    f"{mc.DataType.Name(dtype)} {dims}")
        outputs = {t.name: t for t in member.output}
        for step_tensor, ensemble_tensor in step.output_map.items():
            if step_tensor not in outputs:
                raise BuildError(f"ensemble '{ensemble.name}': step '{member.name}' has no output '{step_tensor}'")
            output = outputs[step_tensor]
            available[ensemble_tensor] = (output.data_type, list(output.dims), f"step '{member.name}'")
    for tensor in ensemble.output:
        if tensor.name not in available or available[tensor.name][:2] != (tensor.data_type, list(tensor.dims)):
            raise BuildError(f"ensemble '{ensemble.name}': output '{tensor.name}' is not produced with its dtype and dims")
