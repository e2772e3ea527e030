"""Ensembles: Python-backend steps chained to a model under dynamic batching.

- ``tritonforge.ensembles.steps``: the step templates (each a complete Triton ``model.py``);
- ``tritonforge.ensembles.library``: the registered steps (tabular, image, classify, user), each making its
  config from the model's signature and the sidecar;
- ``tritonforge.ensembles.wiring``: the ensemble config and its build-time checks;
- ``tritonforge.ensembles.build``: from a built model and its sidecar to verified step and ensemble entries.

The build pipeline (:mod:`tritonforge.builder`) calls :func:`plan`; nothing here imports it.
"""
from .build import Entry, ensemble_name, plan
from .library import ModelFacts

__all__ = ["Entry", "ModelFacts", "ensemble_name", "plan"]
