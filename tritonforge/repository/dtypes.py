"""The one table of data types: numpy, Triton config (``TYPE_*``) and KServe v2 (wire) names.

>>> config_type(np.float32), kserve_type("TYPE_FP32"), numpy_dtype("BYTES")
('TYPE_FP32', 'FP32', dtype('O'))

Strings are ``np.dtype(object)`` in numpy, ``TYPE_STRING`` in a config and ``BYTES`` on the wire.
"""
from __future__ import annotations

import numpy as np

# (numpy dtype name, Triton config type, KServe v2 datatype)
_TABLE = (
    ("bool", "TYPE_BOOL", "BOOL"),
    ("uint8", "TYPE_UINT8", "UINT8"),
    ("uint16", "TYPE_UINT16", "UINT16"),
    ("uint32", "TYPE_UINT32", "UINT32"),
    ("uint64", "TYPE_UINT64", "UINT64"),
    ("int8", "TYPE_INT8", "INT8"),
    ("int16", "TYPE_INT16", "INT16"),
    ("int32", "TYPE_INT32", "INT32"),
    ("int64", "TYPE_INT64", "INT64"),
    ("float16", "TYPE_FP16", "FP16"),
    ("float32", "TYPE_FP32", "FP32"),
    ("float64", "TYPE_FP64", "FP64"),
    ("object", "TYPE_STRING", "BYTES"),
)
_BY_NUMPY = {row[0]: row for row in _TABLE}
_BY_NAME = {name: row for row in _TABLE for name in row[1:]}


class UnknownDtype(ValueError):
    """A data type with no Triton equivalent."""


def _row(dtype) -> tuple[str, str, str]:
    if isinstance(dtype, str) and dtype in _BY_NAME:
        return _BY_NAME[dtype]
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise UnknownDtype(f"data type {dtype!r} has no Triton equivalent") from None
    if dt.kind in "USO":
        return _BY_NUMPY["object"]
    try:
        return _BY_NUMPY[dt.name]
    except KeyError:
        raise UnknownDtype(f"dtype {dt.name} has no Triton equivalent") from None


def numpy_dtype(dtype) -> np.dtype:
    """numpy dtype of a numpy dtype, a config type (``TYPE_FP32``) or a KServe datatype (``FP32``)."""
    return np.dtype(_row(dtype)[0])


def config_type(dtype) -> str:
    """Triton config type name (``TYPE_FP32``) of any of the three spellings."""
    return _row(dtype)[1]


def kserve_type(dtype) -> str:
    """KServe v2 datatype (``FP32``, ``BYTES``) of any of the three spellings."""
    return _row(dtype)[2]


def config_types() -> tuple[str, ...]:
    return tuple(row[1] for row in _TABLE)
