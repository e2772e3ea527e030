"""The repository's on-disk format, and its only reader and writer.

What build-repo writes and serve-repo, check-repo, clients and load tests read lives here:

- :mod:`.dtypes`: the one table of data types (numpy, Triton config ``TYPE_*``, KServe v2);
- :mod:`.tensors`: :class:`TensorSpec` and :class:`Signature`, the contract of a model;
- :mod:`.samples`: ``<version>/samples.npz`` (sample inputs, the source's outputs, tolerances);
- :mod:`.manifest`: ``manifest.json`` (what each entry was built from, per version);
- :mod:`.config`: ``config.pbtxt`` as a ``ModelConfig`` message (read, render, write), labels and warmup files;
- :mod:`.layout`: file and folder names, model folders and version folders.

Only numpy is imported here; :mod:`.config` imports protobuf and tritonclient's ``model_config_pb2``
when it is used.
"""
from .dtypes import config_type, kserve_type, numpy_dtype
from .layout import CONFIG_FILE, MANIFEST_FILE, SAMPLES_FILE, model_folders, versions
from .samples import Samples, latest_samples, read_samples, write_samples
from .tensors import DYNAMIC, STRING, Signature, TensorSpec, tensor_name

__all__ = [
    "CONFIG_FILE", "DYNAMIC", "MANIFEST_FILE", "SAMPLES_FILE", "STRING", "Samples", "Signature", "TensorSpec",
    "config_type", "kserve_type", "latest_samples", "model_folders", "numpy_dtype", "read_samples", "tensor_name", "versions",
    "write_samples",
]
