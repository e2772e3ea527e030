"""Ensembles: Python-backend steps chained to a model under dynamic batching.

- ``tritonforge.ensembles.steps``: the step templates (each a complete Triton ``model.py``);
- ``tritonforge.ensembles.library``: the registered steps (tabular, image, classify), each making its
  config from the model's signature and the sidecar;
- ``tritonforge.ensembles.wiring``: the ensemble config and its build-time checks;
- ``tritonforge.ensembles.build``: from a built model and its sidecar to verified step and ensemble entries.
"""
