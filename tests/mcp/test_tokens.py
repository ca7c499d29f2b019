"""Agent tokens: what they prove, and every way one is refused (no server needed)."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from fleet.errors import ConfigError, TokenRejected
from fleet.mcp.tokens import ensure_secret, mint, secret_file, verify
from fleet.settings import Settings, load_settings
from tests.conftest import ROOT
from tests.mcp.conftest import SECRET, raw_token


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings().model_copy(update={"mcp_secret": SecretStr(SECRET), "home": tmp_path})


def test_a_token_names_one_agent_its_heartbeat_and_its_scope(settings: Settings) -> None:
    identity = verify(settings, mint(settings, "a", 60, heartbeat_id="hb1", bets=["b1", "b2"]))
    assert (identity.agent, identity.heartbeat_id) == ("a", "hb1")
    assert identity.allows("b1") and not identity.allows("b3")
    assert verify(settings, mint(settings, "a", 60)).allows("anything")


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (raw_token({"sub": "a"}, secret="x" * 40), "bad signature"),
        (raw_token({"sub": "a", "iat": 1, "exp": 2}), "expired"),
        (raw_token({"sub": "a"}, kid="k0"), "rotated"),
        (raw_token({"sub": ""}), "names no agent"),
        ("not.a.token", "malformed"),
        ("", "no bearer token"),
    ],
)
def test_bad_tokens_are_rejected_with_the_reason(settings: Settings, token: str, why: str) -> None:
    with pytest.raises(TokenRejected, match=why):
        verify(settings, token)


def test_rotating_the_key_id_retires_every_older_token(settings: Settings) -> None:
    old = mint(settings, "a", 60)
    with pytest.raises(TokenRejected, match="rotated"):
        verify(settings.model_copy(update={"mcp_key_id": "k2"}), old)


def test_lifetimes_and_secrets_are_checked(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="lifetime"):
        mint(settings, "a", 0)
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        mint(settings.model_copy(update={"mcp_secret": SecretStr("short")}), "a", 60)


def test_a_local_fleet_gets_a_private_generated_secret(settings: Settings) -> None:
    local = settings.model_copy(update={"mcp_secret": None})
    with pytest.raises(ConfigError, match="does not exist"):
        mint(local, "a", 60)
    ensure_secret(local)
    assert stat.S_IMODE(secret_file(local).stat().st_mode) == 0o600
    assert verify(local, mint(local, "a", 60)).agent == "a"


def test_fleet_token_prints_a_token_and_never_the_secret(settings: Settings, stack: object) -> None:
    env = {"FLEET_MCP_SECRET": SECRET, "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "fleet.cli", "token", "source_validation_gate", "--ttl", "60", "--bet", "b1"]
    ran = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    identity = verify(settings, ran.stdout.strip())
    assert identity.agent == "source_validation_gate" and identity.bets == frozenset({"b1"})
    assert SECRET not in ran.stdout + ran.stderr
    bad = subprocess.run([*cmd[:4], "nobody"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stderr.strip() == "error: unknown agent 'nobody'"


def test_an_unwritable_home_is_one_clear_error(settings: Settings, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    local = settings.model_copy(update={"mcp_secret": None, "home": blocker / "home"})
    with pytest.raises(ConfigError, match="set FLEET_MCP_SECRET instead"):
        ensure_secret(local)
