"""One adapter per framework, listed once in :data:`ADAPTERS`, in detection order.

Order matters only for detection: the ONNX and Keras checks are cheap and certain; pickle-based
files are tried last, after every adapter that recognises a file by its bytes; LightGBM's
scikit-learn wrappers are estimators too, so LightGBM comes before scikit-learn. CatBoost's ``.cbm``
opens with its own magic bytes, checked before XGBoost's looser look for a "learner" object.
"""
from .catboost import CatBoostAdapter
from .huggingface import HuggingFaceAdapter
from .keras import KerasAdapter
from .lightgbm import LightGBMAdapter
from .onnx_file import OnnxAdapter
from .sklearn import SklearnAdapter
from .torch import TorchAdapter
from .xgboost import XGBoostAdapter
from .yolo import YoloAdapter

# YoloAdapter first: an ultralytics export is an ONNX file (or a torch zip) that it tells apart by its metadata.
ADAPTERS = (YoloAdapter(), OnnxAdapter(), HuggingFaceAdapter(), KerasAdapter(), TorchAdapter(), CatBoostAdapter(), XGBoostAdapter(),
            LightGBMAdapter(), SklearnAdapter())
