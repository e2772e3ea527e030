"""tritonforge: trained models in, a verified Triton Inference Server model repository out.

The installed distribution is this one namespace (the checkout keeps its top-level folders;
``pyproject.toml`` maps them in):

- ``tritonforge.repository``: the repository's on-disk format (dtypes, tensors, samples, manifest,
  configs, file names), read and written here only;
- ``tritonforge.converters``: framework adapters and artifact formats;
- ``tritonforge.ensembles``: the step registry and ensemble wiring;
- ``tritonforge.builder``: the build (``build-repo``): one model at a time through named stages, over
  converters and ensembles;
- ``tritonforge.serving``: ``serve-repo``, ``check-repo`` and the CPU backends;
- ``tritonforge.clients``: ``triton-infer`` and the client library;
- ``tritonforge.loadtests``: ``triton-load`` and the Locust users;
- ``tritonforge.tuning``, ``tritonforge.versions``, ``tritonforge.comparing``: ``tune-repo``,
  ``repo-versions`` and ``compare-models``, over a built repository.
"""
