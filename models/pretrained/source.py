"""A path given to from_pretrained, with the files that identify its layout read once, on first use.

A directory holds config.json (a hub layout: SEDD's and RADD's Hydra config, or MDLM's flat Hugging Face config) or
.hydra/config.yaml (a SEDD/RADD training run); a file is a Lightning .ckpt (MDLM).
"""

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from models.pretrained.info import CheckpointError
from models.pretrained.lightning import read_lightning_checkpoint
from models.pretrained.reading import read_json, read_yaml

CONFIG_JSON = "config.json"
HYDRA_CONFIG = Path(".hydra") / "config.yaml"


class CheckpointSource:
    """path: a checkpoint directory or file. Properties read its config once and are None where it has none."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(
                f"{str(self.path)!r} does not exist; give a checkpoint written by `lightning fit`, a directory "
                "written by `lightning export` or a released model's directory (config.json beside its weights)"
            )
        if self.path.is_dir() and not (self.path / CONFIG_JSON).is_file() and not (self.path / HYDRA_CONFIG).is_file():
            found = sorted(self.path.glob("**/last.ckpt"))
            example = f", e.g. {str(found[-1])!r}" if found else ""
            raise CheckpointError(
                f"{str(self.path)!r} is a directory without {CONFIG_JSON} (nor {HYDRA_CONFIG}); give a checkpoint file "
                f"in it{example}, or a released model's directory (config.json beside its weights)"
            )

    @cached_property
    def json_config(self) -> dict[str, Any] | None:
        """The directory's config.json, or None."""
        file = self.path / CONFIG_JSON
        return read_json(file) if self.path.is_dir() and file.is_file() else None

    @cached_property
    def hydra_config(self) -> tuple[dict[str, Any], Path] | None:
        """(config, its file) for a Hydra config: a config.json with a `model` section (the hub files of SEDD and
        RADD, which save the training run's config), else a run's .hydra/config.yaml; None otherwise. The hub file
        comes first, as in the references' load_model."""
        if isinstance(self.json_config, dict) and isinstance(self.json_config.get("model"), Mapping):
            return self.json_config, self.path / CONFIG_JSON
        file = self.path / HYDRA_CONFIG
        if self.path.is_dir() and file.is_file():
            return read_yaml(file), file
        return None

    @cached_property
    def lightning_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint dict of a file (models.pretrained.lightning, no code runs), or None for a directory."""
        return read_lightning_checkpoint(self.path) if self.path.is_file() else None

    def found(self) -> str:
        """What identifies this source, for the message of an unknown layout."""
        if self.path.is_file():
            keys = sorted(map(str, self.lightning_checkpoint or {}))
            shown = keys if len(keys) <= 8 else [*keys[:8], f"... {len(keys) - 8} more"]
            return f"{self.path}: a checkpoint file with top-level keys {shown}"
        if self.hydra_config is not None:
            config, file = self.hydra_config
            model = config.get("model")
            kind = model.get("type") if isinstance(model, Mapping) else None
            return f"{file}: key 'model.type' is {kind!r}"
        config = self.json_config or {}
        return f"{self.path / CONFIG_JSON}: key 'model_type' is {config.get('model_type')!r} and no 'model' section"
