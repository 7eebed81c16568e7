"""The console entry turns what `main` returns into an exit status (a LightningCLI object is success)."""

import importlib.metadata
import subprocess
import sys

import cli.main


def test_console_maps_a_cli_object_to_status_zero_and_keeps_int_statuses(monkeypatch):
    monkeypatch.setattr(cli.main, "main", lambda: object())
    assert cli.main.console() == 0
    monkeypatch.setattr(cli.main, "main", lambda: 2)
    assert cli.main.console() == 2


def test_python_dash_m_training_exits_nonzero_with_one_line_error_on_a_config_typo(tmp_path):
    """A mistyped key fails before training with status 2 (LightningCLI's parser error), not a traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "training", "fit", "-c", "configs/sedd.yaml", "--trainer.max_stepz=1"],
        capture_output=True, text=True, cwd=str(__import__("pathlib").Path(__file__).parents[2]),
    )
    assert result.returncode == 2
    assert "max_stepz" in result.stderr


def test_the_installed_lightning_command_is_this_projects():
    """The `lightning` console script on this machine is cli.main:console, and no other installed distribution
    provides one (Lightning releases before 2.5.1 shipped their own; pyproject.toml requires a later one)."""
    scripts = {(dist.metadata["Name"], entry.value) for dist in importlib.metadata.distributions()
               for entry in dist.entry_points if entry.group == "console_scripts" and entry.name == "lightning"}
    assert scripts == {("ctmc-diffusion", "cli.main:console")}  # (an editable install may be listed twice)
    lightning_version = tuple(int(part) for part in importlib.metadata.version("lightning").split(".")[:3])
    assert lightning_version >= (2, 5, 1)
