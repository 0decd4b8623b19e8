"""Where an installed litemedsam finds its models: $LITEMEDSAM_WORK_DIR, else a checkout's work_dir, else this
user's data folder by the platform's rule, the same from any current folder."""
import sys

import pytest

from litemedsam.core import settings


def test_an_installed_package_finds_its_models_in_the_users_data_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("LITEMEDSAM_WORK_DIR", raising=False)
    monkeypatch.setattr(settings, "REPO_ROOT", tmp_path / "site-packages")  # not a checkout
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setattr(sys, "platform", "linux")
    for folder in (tmp_path, tmp_path / "elsewhere"):
        folder.mkdir(exist_ok=True)
        monkeypatch.chdir(folder)
        assert settings.work_dir_and_why() == (tmp_path / "data" / "litemedsam", "this user's data folder")
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")  # the XDG rule: a relative path is ignored
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert settings.work_dir() == tmp_path / "home" / ".local" / "share" / "litemedsam"
    monkeypatch.setenv("LITEMEDSAM_WORK_DIR", str(tmp_path / "mine"))
    assert settings.work_dir_and_why() == (tmp_path / "mine", "$LITEMEDSAM_WORK_DIR")


@pytest.mark.parametrize("platform, env, expected", [
    ("darwin", {}, ("Library", "Application Support", "litemedsam")),
    ("win32", {"LOCALAPPDATA": "C:/Users/u/AppData/Local"}, ("litemedsam",)),
])
def test_the_platforms_rule(monkeypatch, tmp_path, platform, env, expected):
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setenv("HOME", str(tmp_path))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert settings.user_data_dir().parts[-len(expected):] == expected


def test_a_checkout_uses_its_work_dir(monkeypatch):
    monkeypatch.delenv("LITEMEDSAM_WORK_DIR", raising=False)
    assert settings.work_dir_and_why() == (settings.REPO_ROOT / "work_dir", "this checkout's work_dir")


def test_models_commands_say_their_errors_as_infer_does(monkeypatch, tmp_path):
    """`models verify` with nothing built: ERROR: ..., exit 2 (nothing could run), as every command says it."""
    from click.testing import CliRunner

    from litemedsam.cli import main

    monkeypatch.setenv("LITEMEDSAM_WORK_DIR", str(tmp_path))
    result = CliRunner().invoke(main, ["models", "verify"])
    assert result.exit_code == 2 and result.output.startswith("ERROR: model file") and "models setup" in result.output
    assert "Traceback" not in result.output
