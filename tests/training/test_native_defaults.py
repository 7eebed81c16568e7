"""models.pretrained.native builds a checkpoint's network without Lightning; the defaults it fills in for a key a
hand-written config leaves out must be the training modules' own (read from their signatures here)."""

import inspect

from models.pretrained.native import AUTOREGRESSIVE_DEFAULTS, DIFFUSION_DEFAULTS, import_object
from training.autoregressive import ARModule
from training.base_module import TrainingModule
from training.module import DiffusionModule


def _as_object(value: object) -> object:
    """A default as the builder uses it: a dotted class path imported, any other value as itself."""
    return import_object(value, "test") if isinstance(value, str) and "." in value else value


def test_diffusion_defaults_are_the_modules_signature_defaults():
    parameters = {**inspect.signature(TrainingModule).parameters, **inspect.signature(DiffusionModule).parameters}
    for key, value in DIFFUSION_DEFAULTS.items():
        assert _as_object(value) == parameters[key].default, key


def test_autoregressive_defaults_are_the_modules_signature_defaults():
    parameters = inspect.signature(ARModule).parameters
    assert _as_object(AUTOREGRESSIVE_DEFAULTS["network"]) is parameters["network"].default
