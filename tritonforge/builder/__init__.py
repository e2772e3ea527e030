"""The build: discover, then each model as one :class:`.model_build.ModelBuild` handed through the
stage functions listed in :data:`.stages.STAGES` (load -> convert -> verify -> configure -> write -> report).

It sits above :mod:`tritonforge.converters` (framework adapters, formats) and
:mod:`tritonforge.ensembles` (steps, wiring), and writes through :mod:`tritonforge.repository`.
``build-repo`` (:mod:`.cli`) is a thin layer over :func:`build_repository`::

    from tritonforge.builder import BuildOptions, build_repository
    results = build_repository(Path("models"), Path("model_repository"), BuildOptions(allow_pickle=True))
"""
from .pipeline import DEFAULT_MAX_BATCH_SIZE, BuildOptions, build_repository
from .results import BuildResult, Status

__all__ = ["DEFAULT_MAX_BATCH_SIZE", "BuildOptions", "BuildResult", "Status", "build_repository"]
