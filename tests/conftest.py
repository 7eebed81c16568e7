"""Test-wide settings: hypothesis profiles sized for CI (2 cores) and for local work; tiny checkpoints of 2-step
fits (module-scoped fixtures) for the tests of the commands and of the evaluation library.

Lightning is imported here, at collection, so that the log handler it installs writes to the session's stderr,
not to the capture of whichever test imported it first (closed after that test: "I/O operation on closed file")."""

import os

import lightning  # noqa: F401 (see the module docstring)
import pytest
from fit_helpers import LABELLED_FIT, TEXT, labelled_corpus, make_checkpoint, make_labelled_checkpoint
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(scope="module")
def ar_checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ar"), "ar.yaml", "models.ARTransformer")


@pytest.fixture(scope="module")
def radd_checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("radd"), "radd.yaml", "models.RADDDenoiser")


@pytest.fixture(scope="module")
def block_checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("bd3lm"), "bd3lm.yaml", "models.BlockDenoiser")


@pytest.fixture(scope="module")
def sedd_checkpoint(tmp_path_factory):
    # No weight averaging: after 2 steps an EMA copy is still the initial DiT, whose zero-initialised output
    # layer and unigram output bias make its prediction the same whatever the context, so that every order
    # would give the same likelihood (an SE of exactly 0).
    return make_checkpoint(tmp_path_factory.mktemp("sedd"), "sedd.yaml", "models.DiT", "--model.ema_decay=0.0")


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "eval.txt"
    path.write_text(TEXT[: 6 * 16 - 1], encoding="utf-8")  # with the end-of-text id: 6 sequences of 16 tokens
    return path


# Checkpoints trained on one labelled_corpus (classes comedy, tragedy), shared by the training, evaluation, command and
# benchmark tests of guidance (fit_helpers.LABELLED_FIT).
@pytest.fixture(scope="session")
def genre_corpus(tmp_path_factory):
    return labelled_corpus(tmp_path_factory.mktemp("genre-corpus"))


@pytest.fixture(scope="session")
def genre_sedd_checkpoint(tmp_path_factory, genre_corpus):
    return make_labelled_checkpoint(tmp_path_factory.mktemp("sedd-genre"), genre_corpus, "sedd-genre.yaml",
                                    "models.DiT", *LABELLED_FIT)


@pytest.fixture(scope="session")
def genre_radd_checkpoint(tmp_path_factory, genre_corpus):
    return make_labelled_checkpoint(tmp_path_factory.mktemp("radd-genre"), genre_corpus, "radd-genre.yaml",
                                    "models.RADDDenoiser", *LABELLED_FIT)


@pytest.fixture(scope="session")
def genre_classifier_checkpoint(tmp_path_factory, genre_corpus):
    return make_labelled_checkpoint(tmp_path_factory.mktemp("classifier"), genre_corpus, "classifier-genre.yaml",
                                    "models.NoisyClassifier", *LABELLED_FIT)
