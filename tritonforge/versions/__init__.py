"""Which versions a model serves: promotion and rollback through Triton's ``version_policy``.

- :func:`serve_versions` (:mod:`.change`): set the policy of every config of a model at once
  (``config.pbtxt`` and each ``configs/<name>.pbtxt``), each file written beside and renamed into
  place, and record who, when and why in the manifest. Version folders are never touched.
- :func:`model_status` (:mod:`.status`): the versions on disk, those served, and every change.
- :func:`parse_serve` (:mod:`.spec`): ``latest``, ``latest:K``, ``N``, ``N,M`` or ``all``.

    serve_versions(Path("model_repository"), "iris_xgb", "1", why="v2 misclassifies setosa")
"""
from .change import Change, serve_versions
from .errors import VersionsError
from .spec import parse_serve
from .status import ModelStatus, model_status

__all__ = ["Change", "ModelStatus", "VersionsError", "model_status", "parse_serve", "serve_versions"]
