"""Client and load-test fixtures: the built examples, served once per session, and what they hold."""
from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format


def ensembles_in(repo: Path) -> list[str]:
    """Names of the ensembles in a repository: configs with platform "ensemble"."""
    from tritonclient.grpc import model_config_pb2 as mc

    found = []
    for config in sorted(Path(repo).glob("*/config.pbtxt")):
        if text_format.Parse(config.read_text(), mc.ModelConfig()).platform == "ensemble":
            found.append(config.parent.name)
    return found


@pytest.fixture(scope="session")
def served_examples(examples_server, built_examples_repo):
    """(server, repository) for the built examples, served once per session by serving's fixture."""
    return examples_server, built_examples_repo
