"""Reading a released checkpoint's files: JSON and Hydra YAML configs, weight files, and typed config values.

Every failure is one line that names the file (and the key): `CheckpointError` for content, FileNotFoundError for
a file that is not there. Weights are read with safetensors or torch.load(weights_only=True): no code runs.
"""

import json
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor

from models.pretrained.info import CheckpointError

Value = TypeVar("Value", int, float, bool, str)
_KIND_NAMES = {int: "an int", float: "a number", bool: "a bool (true/false)", str: "a string"}
_REQUIRED = object()
HUB_WEIGHTS = ("model.safetensors", "pytorch_model.bin")

# YAML 1.1 reads "1e-4" (no dot) as a string; OmegaConf, which wrote the Hydra configs, reads it as a float. This
# is OmegaConf's float pattern, so that `noise.sigma_min: 1e-4` is the number SEDD's run used.
_OMEGACONF_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.VERBOSE,
)


def require_file(file: Path, what: str) -> Path:
    """file if it exists, else FileNotFoundError naming it and `what` it should hold."""
    if not file.is_file():
        raise FileNotFoundError(f"{file}: not found; {what}")
    return file


def hub_weights_file(directory: Path) -> Path:
    """The weights of a hub directory (PyTorchModelHubMixin, transformers): model.safetensors, else
    pytorch_model.bin (the order in which Hugging Face reads them); FileNotFoundError when neither is there."""
    for name in HUB_WEIGHTS:
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(
        f"{directory / HUB_WEIGHTS[0]}: not found (nor {HUB_WEIGHTS[1]}); a hub directory holds its weights next to "
        "config.json"
    )


def read_json(file: Path) -> dict[str, Any]:
    """The JSON object in file (a dict); CheckpointError if the file is not a JSON object."""
    try:
        content = json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{file}: not valid JSON ({error})") from None
    if not isinstance(content, dict):
        raise CheckpointError(f"{file}: expected a JSON object of settings, got a {type(content).__name__}")
    return content


def read_yaml(file: Path) -> dict[str, Any]:
    """The mapping in a YAML file written by OmegaConf (a Hydra run's .hydra/config.yaml), floats read as OmegaConf
    reads them. Needs PyYAML (a dependency of Lightning)."""
    import yaml

    class OmegaConfLoader(yaml.SafeLoader):
        """SafeLoader plus OmegaConf's float pattern (the subclass keeps yaml.SafeLoader itself unchanged)."""

    OmegaConfLoader.add_implicit_resolver("tag:yaml.org,2002:float", _OMEGACONF_FLOAT, list("-+0123456789."))
    try:
        content = yaml.load(file.read_text(), Loader=OmegaConfLoader)  # a SafeLoader subclass: no object tags
    except yaml.YAMLError as error:
        raise CheckpointError(f"{file}: not valid YAML ({' '.join(str(error).split())})") from None
    if not isinstance(content, dict):
        raise CheckpointError(f"{file}: expected a YAML mapping of settings, got a {type(content).__name__}")
    return content


def load_torch(file: Path) -> Any:
    """torch.load(file, weights_only=True) on the CPU (memory-mapped for the zip format): tensors, containers and
    numbers only. A refused object raises CheckpointError naming the file."""
    try:
        return torch.load(file, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(file))
    except Exception as error:  # pickle and torch raise several kinds; the message says which
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{file}: torch.load(weights_only=True) cannot read it: {first_line}") from error


def read_weights(file: Path) -> dict[str, Tensor]:
    """A state dict {name: tensor} from a .safetensors file (safetensors) or a torch.save file (.bin, .pth)."""
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(file, device="cpu")
    return as_state_dict(load_torch(file), file, "the file")


def as_state_dict(content: Any, file: Path, key: str) -> dict[str, Tensor]:
    """content as {name: tensor}, or CheckpointError naming file and key when it is not a mapping of tensors."""
    if not isinstance(content, Mapping) or not all(
        isinstance(name, str) and isinstance(tensor, Tensor) for name, tensor in content.items()
    ):
        raise CheckpointError(f"{file}: {key} must be a state dict (parameter names -> tensors)")
    return dict(content)


def setting(
    config: Mapping[str, Any], key: str, file: Path, kind: type[Value], default: Any = _REQUIRED, prefix: str = ""
) -> Value:
    """The value at the dotted `key` of config, checked to be of `kind` (int, float, bool or str).

    A missing key returns `default` when one is given, else raises; a value of another type, or an unresolved
    OmegaConf interpolation "${...}", raises. Every error is a CheckpointError naming file and prefix + key
    (prefix: where config sits in the file, e.g. "hyper_parameters.config.").
    """
    name = prefix + key
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            if default is not _REQUIRED:
                return default
            raise CheckpointError(f"{file}: key '{name}' is missing; the reference's config always has it")
        node = node[part]
    if isinstance(node, str) and "${" in node:
        raise CheckpointError(
            f"{file}: key '{name}' is the interpolation {node!r}, which is not resolved here; write its value instead"
        )
    if kind is float and isinstance(node, (int, float)) and not isinstance(node, bool):
        return float(node)
    if isinstance(node, kind) and (kind is bool or not isinstance(node, bool)):
        return node
    raise CheckpointError(f"{file}: key '{name}' must be {_KIND_NAMES[kind]}, got {node!r}")
