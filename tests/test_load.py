"""A bounded load test of the encoder (issue 7): the real service in a subprocess (tiny preset), 16 concurrent
async clients, 2 x 200 POST /encode calls of one 8x64x64 window.

No request may fail other than an explicit 503 (with Retry-After); the server's RSS may not grow by more than
200 MB between the first and the second round (bench/load.py is the full-size run: 64 clients, 2000 calls).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from load import EncoderProcess, rss_mb, run_load

pytestmark = pytest.mark.slow


def test_encoder_under_concurrent_load_fails_nothing_but_503_and_memory_stays_bounded(tmp_path):
    with EncoderProcess("tiny", store=str(tmp_path), extra_env={"VJEPA_ROBOT_THREADS": "1"}) as enc:
        first = asyncio.run(run_load(enc.url, clients=16, calls=200, size=64, pid=enc.pid))
        second = asyncio.run(run_load(enc.url, clients=16, calls=200, size=64, pid=enc.pid))
        final_rss = rss_mb(enc.pid)
        assert enc.proc.poll() is None  # still serving
    for res in (first, second):
        assert res.failed == 0, res.failures
        assert res.ok + res.busy_503 == 200 and res.ok > 0
        assert res.p99_ms > 0
    # memory: bounded in absolute terms, and the second round does not keep growing the process
    assert final_rss - first.rss_before_mb < 200, (first, second, final_rss)
    assert second.rss_after_mb - second.rss_before_mb < 100, second
    print(f"load: {first} | {second}")
