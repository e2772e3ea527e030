"""Triton Python-based backend for ``backend: "fil"`` (CPU): serve-repo's stand-in for FIL.

Serves ``<model>/<version>/<file of its model_type>`` (or ``default_model_filename``) with the
model's own library (XGBoost, LightGBM; Treelite for checkpoints), one call per batch, after the
load-time checks FIL makes: a known ``model_type``, one FP32 input ``input__0`` with the forest's
feature count, one FP32 output ``output__0`` as wide as ``predict_proba`` makes it (false: the
class index, one column), and the classifier switch of the release the config was written for
(``output_class`` until 25.03, ``is_classifier`` from 25.09). GPU-only settings are named once in Triton's log and ignored.
"""
from tritonforge.converters.formats import fil
from tritonforge.repository.dtypes import config_type
from tritonforge.serving.backends.common import BatchedModel, ConfigRefused, ModelArgs, refuse

CLASSIFIER_KEYS = ("output_class", "is_classifier")
GPU_ONLY = ("algo", "storage_type", "threads_per_tree", "blocks_per_sm", "transfer_threshold", "layout", "chunk_size")


def _flag(margs: ModelArgs, key: str) -> bool | None:
    value = margs.parameter(key)
    if value is None:
        return None
    if value.lower() not in ("true", "false"):
        raise ConfigRefused(f"model '{margs.name}': FIL parameter '{key}' must be \"true\" or \"false\", not \"{value}\"")
    return value.lower() == "true"


def _check(margs: ModelArgs, facts) -> fil.FilSettings:
    """FIL's load-time checks; the settings the config asks for (predict_proba false: class indices)."""
    name = margs.name
    inputs, outputs = margs.inputs(), margs.outputs()
    if [io["name"] for io in inputs] != [fil.INPUT] or [io["name"] for io in outputs] != [fil.OUTPUT]:
        raise ConfigRefused(f"model '{name}': FIL models take one input '{fil.INPUT}' and give one output '{fil.OUTPUT}'")
    fp32 = config_type(fil.F32)
    for io in inputs + outputs:
        if io.get("data_type") != fp32:
            raise ConfigRefused(f"model '{name}': FIL tensor '{io['name']}' must be {fp32}, not {io.get('data_type')}")
    features = [int(d) for d in inputs[0].get("dims", [])]
    if features != [facts.num_feature]:
        raise ConfigRefused(f"model '{name}': input '{fil.INPUT}' has dims {features}; the forest reads "
                            f"{facts.num_feature} features")
    classifier = None
    for key in CLASSIFIER_KEYS:
        flag = _flag(margs, key)
        classifier = flag if flag is not None else classifier
    proba = bool(_flag(margs, "predict_proba"))
    if bool(classifier) != facts.classifier:
        what = "a classifier" if facts.classifier else "a regressor"
        raise ConfigRefused(f"model '{name}': the forest is {what} but the config's {' / '.join(CLASSIFIER_KEYS)} says "
                            f"{'true' if classifier else 'false'}")
    settings = fil.FilSettings("class_index" if facts.classifier and not proba else "probabilities")
    width, expected = [int(d) for d in outputs[0].get("dims", [])], facts.output_width(settings)
    if width != [expected]:
        what = "a class index" if settings.class_index else f"{expected} value(s)"
        raise ConfigRefused(f"model '{name}': output '{fil.OUTPUT}' has dims {width}; the forest gives {what} per row"
                            + (" (predict_proba is false)" if settings.class_index else ""))
    return settings


class TritonPythonModel:
    def initialize(self, args):
        try:
            margs = ModelArgs.parse(args)
            model_type = margs.parameter("model_type")
            if model_type not in fil.FILES:
                raise ConfigRefused(f"model '{margs.name}': FIL parameter model_type is {model_type!r}; "
                                    f"serve-repo reads {', '.join(fil.FILES)}")
            forest = fil.Forest(margs.artifact(fil.FILES[model_type]), model_type)
            forest.class_index = _check(margs, forest.facts).class_index
        except Exception as exc:
            raise refuse(exc) from None
        ignored = [key for key in GPU_ONLY if margs.parameter(key) is not None]
        if any(g.get("kind") == "KIND_GPU" for g in margs.config.get("instance_group") or []):
            ignored.append("KIND_GPU")
        if ignored:
            import triton_python_backend_utils as pb_utils

            logger = getattr(pb_utils, "Logger", None)
            if logger is not None:
                logger.log_warn(f"model '{margs.name}': serve-repo runs FIL models on the CPU and ignores {', '.join(ignored)}")
        self.model = BatchedModel(margs, lambda arrays: {fil.OUTPUT: forest(arrays[fil.INPUT])})

    def execute(self, requests):
        return self.model.execute(requests)
