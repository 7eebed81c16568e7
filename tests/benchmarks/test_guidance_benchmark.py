"""benchmarks/guidance.py end to end on tiny settings: the labelled SEDD and the classifier of the session fixtures
(labelled_corpus, 4 steps) are handed over with --ckpt, the AR judge is fitted by the script's own subprocess (on the
labelled corpus too, so a conditional AR model read at its null label).
Checks the JSON against the plan written out by hand (cells per gamma, genre and guidance mode, the NFE of each:
K + 1 calls, twice the rows for classifier-free guidance at gamma not in {0, 1}), the binomial SE of each share, and
that the samples files read back with the judge's reader.
"""

from __future__ import annotations

import json
import math

from benchmarks import guidance
from evaluation.judge import read_samples

TINY = ["--data.labels=directory", "--data.tokenizer=char", "--data.seq_len=16", "--data.batch_size=4",
        "--model.network.hidden_size=32",
        "--model.network.num_layers=1", "--model.network.num_heads=2", "--model.network.max_length=32",
        "--trainer.enable_model_summary=false"]


def test_guidance_benchmark_runs_end_to_end_on_tiny_settings(genre_corpus, genre_sedd_checkpoint,
                                                              genre_classifier_checkpoint, tmp_path):
    corpus = genre_corpus  # the fixtures' corpus: the same blocks and split for the judge fitted here
    out, work = tmp_path / "guidance.json", tmp_path / "work"
    steps, samples = 2, 3
    guidance.main([
        "--steps=2", f"--fit_arg=--data.paths={corpus}", *(f"--fit_arg={item}" for item in TINY), "--models",
        "sedd-genre", f"--ckpt=sedd-genre={genre_sedd_checkpoint}", f"--ckpt=classifier={genre_classifier_checkpoint}",
        "--gammas", "0", "1", "2", f"--num_samples={samples}", f"--sampler_steps={steps}", "--val_blocks=6",
        "--threads=1", f"--out={out}", f"--work_dir={work}",
    ])
    report = json.loads(out.read_text())
    assert set(report) == {"settings", "training", "bounds", "cells", "goals", "seconds"}
    judge = report["training"]["ar"]
    assert not judge["reused"] and judge["wall_s"] > 0 and "--trainer.max_steps=2" in judge["command"]
    assert report["training"]["sedd-genre"]["reused"] and report["training"]["classifier"]["reused"]

    bound = report["bounds"]["sedd-genre"]
    assert bound["blocks"] == 6
    assert math.isclose(bound["unconditional"] - bound["conditional"], bound["label_information"], abs_tol=1e-9)
    assert all(math.isfinite(value) for value in bound.values())

    plan = [(mode, gamma, genre) for mode in ("classifier-free", "predictor") for gamma in (0.0, 1.0, 2.0)
            for genre in ("comedy", "tragedy")]
    cells = report["cells"]
    assert [(cell["mode"], cell["gamma"], cell["genre"]) for cell in cells] == plan
    for cell in cells:
        rows = 2 if cell["mode"] == "classifier-free" and cell["gamma"] == 2.0 else 1
        assert cell["nfe"] == rows * (steps + 1)
        share = cell["share"]
        assert 0 <= share <= 1 and math.isclose(cell["share_se"], math.sqrt(share * (1 - share) / samples))
        assert cell["gen_ppl"] > 1 and cell["unigram_entropy_nats"] > 0
        texts, nfe = read_samples(str(work / cell["samples_file"]))
        assert len(texts) == samples and nfe == cell["nfe"]
    assert set(report["goals"]) == {"sedd-genre classifier-free", "sedd-genre predictor"}
    assert (work / "results.md").is_file()
