"""Reading a Lightning .ckpt written by another code base without running any of its code.

MDLM's checkpoints pickle, next to the tensors, the run's OmegaConf config and its Hugging Face tokenizer (the
`hyper_parameters` that `save_hyperparameters()` stores). torch.load(weights_only=True) refuses those classes, and
unpickling them for real (weights_only=False) would import their modules and run whatever the pickle names.
Instead, for this one load, every global that torch's weights-only unpickler does not allow already is registered
(torch.serialization.safe_globals) as an inert stand-in under the same name: a `PickledObject` subclass that only
stores the arguments it is built with and the state it is given. Nothing of the checkpoint's classes is imported
or called; tensors, containers and numbers load as usual, under the weights-only unpickler's own checks (globals
from os, sys, posix and nt stay refused). The stand-ins are then read as data: `plain` turns an OmegaConf
DictConfig into a dict.
"""

from pathlib import Path
from typing import Any

import torch

from models.pretrained.info import CheckpointError
from models.pretrained.reading import load_torch


class PickledObject:
    """An object of a class that was not imported: its `global_name` ("module.Class"), the `args` it was built with
    and the `state` it was given (pickle's BUILD), as they were pickled."""

    global_name = "?"

    def __new__(cls, *args: Any) -> "PickledObject":
        instance = super().__new__(cls)
        instance.args = args
        instance.state = None
        return instance

    def __init__(self, *args: Any) -> None:
        """Nothing to do: __new__ stored the arguments."""

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"PickledObject({self.global_name})"


def _defaultdict_as_dict(*args: Any) -> dict:
    """Stand-in for collections.defaultdict: a plain dict (the unpickler fills only plain dicts; the default
    factory, which would be a PickledObject, is not needed to read the items)."""
    return {}


def _stand_in(global_name: str) -> Any:
    if global_name == "collections.defaultdict":
        return _defaultdict_as_dict
    return type(global_name.rsplit(".", 1)[-1], (PickledObject,), {"global_name": global_name})


ZIP_MAGIC = b"PK\x03\x04"  # torch.save's archive format is a zip file
PICKLE_PROTOCOL_BYTE = 0x80  # the first byte of a pickle of protocol >= 2


def read_lightning_checkpoint(file: Path) -> dict[str, Any]:
    """The checkpoint dict of a .ckpt (a `lightning fit` checkpoint, or another code base's Lightning checkpoint),
    with every object of a non-allowlisted class as a PickledObject.

    Raises CheckpointError, one line naming the file, when it is not a torch.save archive (a text file, a plain
    pickle), when the archive is damaged or cut short, when it is not a dict, or when this torch cannot register
    stand-ins by name (torch.serialization.safe_globals with (object, name) pairs, torch 2.6).
    """
    with open(file, "rb") as handle:
        head = handle.read(len(ZIP_MAGIC))
    if head != ZIP_MAGIC:
        what = "a pickle, not a torch.save archive" if head[:1] == bytes([PICKLE_PROTOCOL_BYTE]) else (
            "not a PyTorch archive")
        readable = "is not a readable checkpoint" if head[:1] == bytes([PICKLE_PROTOCOL_BYTE]) else (
            "is not a checkpoint written by `lightning fit`")
        raise CheckpointError(f"{str(file)!r} {readable} ({what}); give a checkpoint written by `lightning fit`")
    if torch.torch_version.TorchVersion(torch.__version__) < "2.6":
        raise CheckpointError(
            f"{file}: reading a Lightning .ckpt without running its code needs torch >= 2.6, this is "
            f"{torch.__version__}; upgrade torch"
        )
    try:
        unknown = torch.serialization.get_unsafe_globals_in_checkpoint(file)
        with torch.serialization.safe_globals([(_stand_in(name), name) for name in unknown]):
            content = load_torch(file)
    except Exception as error:  # a damaged or cut-short zip: torch and zipfile raise several kinds
        raise CheckpointError(
            f"{str(file)!r} is not a readable checkpoint (a damaged or cut-short archive: {type(error).__name__}); "
            "give a checkpoint written by `lightning fit` (a file cut short by a crash or a copy is not readable)"
        ) from None
    if not isinstance(content, dict):
        raise CheckpointError(f"{file}: a Lightning checkpoint is a dict, got {type(content).__name__}")
    return content


def plain(value: Any) -> Any:
    """value with OmegaConf containers and nodes (PickledObjects of omegaconf classes) replaced by their content:
    DictConfig -> dict, ListConfig -> list, a value node -> its value; dicts, lists and tuples are read through."""
    if (
        isinstance(value, PickledObject)
        and value.global_name.startswith("omegaconf.")
        and isinstance(value.state, dict)
    ):
        if "_content" in value.state:
            return plain(value.state["_content"])
        if "_val" in value.state:
            return plain(value.state["_val"])
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(item) for item in value)
    return value
