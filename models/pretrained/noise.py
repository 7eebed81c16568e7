"""The noise schedule a SEDD, RADD or MDLM config names, as this project's `ctmc` schedule with the same formulas.

The three references build it with `get_noise(config)` (noise_lib.py; MDLM's noise_schedule.py):
- "loglinear": LogLinearNoise() with its default eps = 1e-3 whatever the config says (get_noise passes nothing),
  total(t) = -log(1 - (1 - eps) t), rate (1 - eps) / (1 - (1 - eps) t): ctmc.LogLinear(1e-3), the same formulas.
- "geometric": GeometricNoise(sigma_min, sigma_max), total(t) = sigma_min^{1-t} sigma_max^t, rate
  total(t) log(sigma_max / sigma_min): ctmc.Geometric(sigma_min, sigma_max, start_at_sigma_min=True).
Other types (MDLM's cosine, cosinesqr, linear) have no schedule here and raise.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ctmc
from models.pretrained.info import CheckpointError
from models.pretrained.reading import setting

LOG_LINEAR_EPS = 1e-3  # LogLinearNoise's default, the only eps the references' get_noise uses


def noise_schedule(config: Mapping[str, Any], file: Path, prefix: str = "") -> ctmc.NoiseSchedule:
    """The schedule of config's `noise` section (module doc); CheckpointError naming file and key (prefix: where
    config sits in the file, as in reading.setting) otherwise."""
    kind = setting(config, "noise.type", file, str, prefix=prefix)
    if kind == "loglinear":
        return ctmc.LogLinear(LOG_LINEAR_EPS)
    if kind == "geometric":
        sigma_min = setting(config, "noise.sigma_min", file, float, prefix=prefix)
        sigma_max = setting(config, "noise.sigma_max", file, float, prefix=prefix)
        return ctmc.Geometric(sigma_min, sigma_max, start_at_sigma_min=True)
    raise CheckpointError(
        f"{file}: key '{prefix}noise.type' is {kind!r}, a schedule this project does not have; supported: 'loglinear', "
        "'geometric'"
    )


def gpt2_tokenizer(clean_tokens: int) -> str | None:
    """'gpt2' when the vocabulary is GPT-2's 50,257 BPE tokens (the references' OpenWebText data), else None."""
    return "gpt2" if clean_tokens == 50257 else None
