"""Shared fixtures: each area keeps its fixtures in its own module, gathered here."""
from fixtures_build import *  # noqa: F401,F403
from fixtures_serving import *  # noqa: F401,F403
from fixtures_clients import *  # noqa: F401,F403
from fixtures_s3 import *  # noqa: F401,F403
from fixtures_text import *  # noqa: F401,F403
from fixtures_detect import *  # noqa: F401,F403
from fixtures_reference import *  # noqa: F401,F403
