"""A fleet on one machine: three serve-repo replicas follow one bucket; under wrk's load on every
replica, a new version is published and promoted in the bucket, and no request fails.

The scenario is benchmarks/fleet.py's, kept short (2 connections per replica, 2 s rounds): replicas
are heavy on a 2-core CI box. The times it measures are printed, never asserted.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import fleet as scenario  # noqa: E402


@pytest.mark.slow
def test_three_replicas_take_a_promotion_under_load_and_lose_no_request(s3_url, lin_repos, tmp_path):
    result = scenario.rollout(lin_repos.v1, lin_repos.v2, s3_url, tmp_path, replicas=3, connections=2,
                              before_s=1.0, after_s=1.0, limit_s=180.0)
    print("\n" + "\n".join(result.lines()))

    assert result.problems == []
    assert result.all_new_s is not None, "a replica never answered with the promoted version"
    assert result.old_gone_s is not None, "a replica still serves the old version"
    assert all(n > 0 for n in result.requests_per_replica), result.requests_per_replica
    assert result.failed == 0, result.failed_per_replica
