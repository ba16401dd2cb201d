"""The provider settings: where they come from, how bad values are refused, how they show, and
that they reach the provider that make_provider builds (checked on a real loopback request)."""

from __future__ import annotations

import json
import tomllib
from contextlib import aclosing
from pathlib import Path

import attrs
import pytest
import trio

from greenroom.agent.anthropic import AnthropicProvider
from greenroom.agent.openai import OpenAIProvider
from greenroom.agent.provider import CompletionRequest
from greenroom.cli.arguments import make_parser
from greenroom.cli.environment import load_settings
from greenroom.config import Config
from greenroom.protocol.chat import Message
from greenroom.protocol.errors import InvalidArgument
from greenroom.runtime import make_provider
from greenroom.settings import SettingsError, load_file, render, resolve
from tests.agent.fake_openai import open_fake_openai, text_reply

KEY = "sk-ant-abcdefghijklmnop1234"
AZURE = """
provider = "openai"
base_url = "https://example.openai.azure.com/openai/deployments/gpt-4o"
model = "gpt-4o"
api_key_header = "api-key"
temperature = 0.2
max_tokens = 4000

[query]
api-version = "2024-10-21"

[extra_headers]
X-Proxy-Key = "proxy-secret-0123456789"

[extra_body]
seed = 7
response_format = { type = "text" }
"""


def write(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.toml"
    path.write_text(text)
    return path


def test_the_file_sets_every_provider_setting(tmp_path: Path) -> None:
    settings = resolve(file=write(tmp_path, AZURE), env={}, flags={})
    config = settings.config()
    assert (config.api_key_header, config.temperature, config.max_tokens) == ("api-key", 0.2, 4000)
    assert config.query == {"api-version": "2024-10-21"}
    assert config.extra_headers == {"X-Proxy-Key": "proxy-secret-0123456789"}
    assert config.extra_body == {"seed": 7, "response_format": {"type": "text"}}
    assert "proxy-secret" not in repr(config)


def test_the_environment_and_flags(tmp_path: Path) -> None:
    env = {
        "GREENROOM_TEMPERATURE": "0.7",
        "GREENROOM_MAX_TOKENS": "123",
        "GREENROOM_EXTRA_HEADERS": '{"HTTP-Referer": "https://greenroom.example"}',
        "GREENROOM_EXTRA_BODY": '{"top_p": 0.9}',
        "GREENROOM_QUERY": '{"api-version": "2025-01-01"}',
        "GREENROOM_API_KEY_HEADER": "api-key",
    }
    config = resolve(file=write(tmp_path, AZURE), env=env, flags={}).config()
    assert (config.temperature, config.max_tokens) == (0.7, 123)
    assert config.extra_headers == {"HTTP-Referer": "https://greenroom.example"}
    assert config.extra_body == {"top_p": 0.9}
    assert config.query == {"api-version": "2025-01-01"}

    args = make_parser().parse_args(
        ["serve", "--config-dir", str(tmp_path), "--temperature", "0", "--max-tokens", "9",
         "--api-key-header", "Authorization"]
    )  # fmt: skip
    settings = load_settings(args, env)
    config = settings.config()
    assert (config.temperature, config.max_tokens, config.api_key_header) == (
        0.0, 9, "Authorization",
    )  # fmt: skip
    assert settings.sources["temperature"] == "flag --temperature"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("temperature = 2.5\n", "bad temperature 2.5: give a number from 0 to 2"),
        ("temperature = 'hot'\n", "bad temperature 'hot'"),
        ("temperature = nan\n", "bad temperature nan"),
        ("max_tokens = 0\n", "bad max_tokens 0: give a whole number from 1"),
        ("max_tokens = 1.5\n", "bad max_tokens 1.5"),
        ("api_key_header = 'api key'\n", "bad api_key_header 'api key': give an HTTP header"),
        ("[extra_headers]\n'bad name' = 'x'\n", "bad extra_headers ***"),
        ("[extra_headers]\nX-Count = 3\n", "bad extra_headers ***"),
        ("extra_headers = 'X-A: b'\n", "bad extra_headers ***: give a table"),
        ("[query]\napi-version = 2024\n", "bad query {'api-version': 2024}: give a table"),
        ("extra_body = [1]\n", "bad extra_body [1]: give a table"),
        ("provider = 'claude'\n", "give one of simulated, openai, anthropic"),
    ],
)
def test_bad_values_are_refused_by_name(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SettingsError) as caught:
        load_file(path)
    assert str(path) in caught.value.message and message in caught.value.message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GREENROOM_EXTRA_BODY", "{not json"),
        ("GREENROOM_EXTRA_HEADERS", '{"X-A": "line\\r\\nX-Injected: 1"}'),
        ("GREENROOM_QUERY", '["api-version"]'),
        ("GREENROOM_TEMPERATURE", "-1"),
    ],
)
def test_bad_environment_values(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        resolve(file=None, env={name: value}, flags={})


def test_each_provider_reads_its_own_key_variable() -> None:
    both = {"OPENAI_API_KEY": "sk-openai-0000", "ANTHROPIC_API_KEY": KEY}
    anthropic = resolve(file=None, env={**both, "GREENROOM_PROVIDER": "anthropic"}, flags={})
    assert anthropic.config().api_key == KEY
    assert anthropic.sources["api_key"] == "env ANTHROPIC_API_KEY"
    openai = resolve(file=None, env={**both, "GREENROOM_PROVIDER": "openai"}, flags={})
    assert openai.config().api_key == "sk-openai-0000"
    # An OpenAI key is never sent to Anthropic, nor the other way round.
    alone = resolve(
        file=None, env={"GREENROOM_PROVIDER": "anthropic", "OPENAI_API_KEY": "x" * 20}, flags={}
    )
    assert alone.config().api_key is None
    wins = resolve(
        file=None,
        env={**both, "GREENROOM_PROVIDER": "anthropic", "GREENROOM_API_KEY": "sk-mine-000000"},
        flags={},
    )
    assert wins.config().api_key == "sk-mine-000000"


def test_shown_settings_mask_header_values_and_stay_toml(tmp_path: Path) -> None:
    settings = resolve(file=write(tmp_path, AZURE), env={}, flags={})
    shown = render(settings)
    assert "proxy-secret" not in shown
    assert 'extra_headers = { "X-Proxy-Key" = "...6789" }  # file' in shown
    assert 'query = { "api-version" = "2024-10-21" }  # file' in shown
    body = tomllib.loads("\n".join(line for line in shown.splitlines() if "extra_body" in line))
    assert body["extra_body"] == {"seed": 7, "response_format": {"type": "text"}}


def test_make_provider_anthropic() -> None:
    with pytest.raises(InvalidArgument, match="anthropic provider needs a model"):
        make_provider(Config(provider="anthropic"))
    provider = make_provider(Config(provider="anthropic", model="claude-x", api_key=KEY))
    assert isinstance(provider, AnthropicProvider) and provider.name == "anthropic"
    assert "https://api.anthropic.com/v1" in repr(provider) and KEY not in repr(provider)
    with pytest.raises(InvalidArgument, match="simulated, openai or anthropic"):
        make_provider(Config(provider="gemini", model="m"))


async def test_the_settings_reach_the_request(tmp_path: Path) -> None:
    """An Azure-style configuration, end to end from the file to the bytes on the wire."""
    async with open_fake_openai() as fake:
        text = AZURE.replace(
            "https://example.openai.azure.com/openai/deployments/gpt-4o",
            fake.url + "/deployments/gpt-4o",
        )
        config = resolve(file=write(tmp_path, text), env={}, flags={}).config()
        provider = make_provider(attrs.evolve(config, api_key=KEY))
        assert isinstance(provider, OpenAIProvider)
        fake.script(text_reply("ok"))
        request = CompletionRequest(
            messages=(Message(role="user", content="hi"),),
            temperature=config.temperature,
            max_tokens=config.max_tokens,
        )
        try:
            with trio.fail_after(60):
                async with aclosing(provider.stream(request)) as chunks:
                    async for _ in chunks:
                        pass
        finally:
            await provider.aclose()
    (received,) = fake.received
    assert received.path == "/v1/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
    assert received.headers["api-key"] == KEY and "authorization" not in received.headers
    assert received.headers["x-proxy-key"] == "proxy-secret-0123456789"
    body = received.json
    assert (body["temperature"], body["max_tokens"], body["seed"]) == (0.2, 4000, 7)
    assert json.dumps(body["response_format"]) == '{"type": "text"}'


def test_the_examples_in_the_providers_doc_are_valid_settings(tmp_path: Path) -> None:
    doc = (Path(__file__).parent.parent / "docs" / "providers.md").read_text()
    blocks = [part.split("```")[0] for part in doc.split("```toml\n")[1:]]
    assert len(blocks) >= 7
    for number, block in enumerate(blocks):
        path = write(tmp_path / str(number), block)
        config = resolve(file=path, env={}, flags={}).config()
        assert config.provider in ("openai", "anthropic") and config.model, block
        make_provider(attrs.evolve(config, api_key=KEY))  # builds, or raises
