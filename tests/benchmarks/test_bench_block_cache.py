"""benchmarks/bench_block_cache.py on a tiny setting (V = 7, 32 tokens, batch 2): the cached and the recomputed
samples must agree (the script refuses to report otherwise), the JSON holds one row per vocabulary and sampler
with positive times, and the breakdown of a cached call names every piece."""

from __future__ import annotations

import json
import math

from benchmarks import bench_block_cache


def test_bench_block_cache_runs_on_a_tiny_setting(tmp_path):
    out = tmp_path / "cache.json"
    report = bench_block_cache.main(["--length=32", "--batch=2", "--vocab", "7", "--profile=2", f"--out={out}"])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert [(row["vocab"], row["sampler"]) for row in report["rows"]] == [(7, "first-hitting"), (7, "euler")]
    for row in report["rows"]:
        assert row["same_samples"] and row["cache_s"] > 0 and math.isfinite(row["speedup"])
        assert row["cache_calls"] > row["recomputed_calls"]  # the context encodings come on top of the block calls
    assert report["rows"][0]["nfe"] == 32  # exact first-hitting: one call per token
    assert set(report["profile"]["7"]) == {"denoise_block", "trunk", "head", "log_softmax", "draw", "sampler_call",
                                           "recomputed_forward"}
