"""Released checkpoints of the papers (SEDD, RADD, MDLM) as this project's networks: `from_pretrained(path)`.

One module per layout (sedd, radd, mdlm, mdlm_lightning) with its detection rule and its reading of the config;
shared parts: reading (files and typed config values), lightning (a .ckpt read without running code), ddit (the
references' weight names and their map onto ours), noise (the config's schedule), assemble (network, process,
facts), loader (detection and `from_pretrained`). See docs/models.md, "Released checkpoints".
"""

from models.pretrained.info import CheckpointError, PretrainedInfo
from models.pretrained.loader import LAYOUTS, detect_layout, from_pretrained

__all__ = ["LAYOUTS", "CheckpointError", "PretrainedInfo", "detect_layout", "from_pretrained"]
