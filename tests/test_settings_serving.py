"""The serving settings: allowed_origins and metrics_public from the file, the environment and
flags, bad values refused with the key and the source named."""

from __future__ import annotations

from pathlib import Path

import pytest

from greenroom.cli.arguments import make_parser
from greenroom.settings import SettingsError, resolve


def settings_of(
    tmp_path: Path, file: str, env: dict[str, str], argv: list[str]
) -> dict[str, object]:
    (tmp_path / "config.toml").write_text(file)
    args = make_parser().parse_args(["serve", *argv])
    resolved = resolve(file=tmp_path / "config.toml", env=env, flags=vars(args))
    return {key: (resolved.values[key], resolved.sources[key])
            for key in ("allowed_origins", "metrics_public")}  # fmt: skip


def test_each_layer_sets_them(tmp_path: Path) -> None:
    file = 'allowed_origins = ["https://Greenroom.Example.com/"]\nmetrics_public = true\n'
    assert settings_of(tmp_path, file, {}, []) == {
        "allowed_origins": (("https://greenroom.example.com",), "file"),
        "metrics_public": (True, "file"),
    }
    env = {"GREENROOM_ALLOWED_ORIGINS": "https://a.example, http://b.example:8080",
           "GREENROOM_METRICS_PUBLIC": "false"}  # fmt: skip
    assert settings_of(tmp_path, file, env, []) == {
        "allowed_origins": (
            ("https://a.example", "http://b.example:8080"), "env GREENROOM_ALLOWED_ORIGINS"
        ),
        "metrics_public": (False, "env GREENROOM_METRICS_PUBLIC"),
    }
    flags = ["--allowed-origins", "https://c.example", "--metrics-public"]
    assert settings_of(tmp_path, "", env, flags) == {
        "allowed_origins": (("https://c.example",), "flag --allowed-origins"),
        "metrics_public": (True, "flag --metrics-public"),
    }
    assert settings_of(tmp_path, "", {}, ["--metrics-public", "no"])["metrics_public"] == (
        False, "flag --metrics-public")  # fmt: skip
    assert settings_of(tmp_path, "", {}, []) == {
        "allowed_origins": ((), "default"),
        "metrics_public": (False, "default"),
    }


@pytest.mark.parametrize(
    ("file", "env", "says"),
    [
        ('allowed_origins = "https://a.example"\n', {}, "bad allowed_origins"),
        ('allowed_origins = ["https://a.example/ui"]\n', {}, "bad allowed_origins"),
        ('metrics_public = "yes"\n', {}, "bad metrics_public"),
        ("", {"GREENROOM_ALLOWED_ORIGINS": "ftp://a.example"}, "GREENROOM_ALLOWED_ORIGINS"),
        ("", {"GREENROOM_METRICS_PUBLIC": "maybe"}, "GREENROOM_METRICS_PUBLIC"),
    ],
)
def test_bad_values_are_refused_with_where_they_came_from(
    tmp_path: Path, file: str, env: dict[str, str], says: str
) -> None:
    with pytest.raises(SettingsError, match=says):
        settings_of(tmp_path, file, env, [])


def test_a_bad_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        make_parser().parse_args(["serve", "--allowed-origins", "example.com"])
    assert exited.value.code == 2
    assert "--allowed-origins" in capsys.readouterr().err
