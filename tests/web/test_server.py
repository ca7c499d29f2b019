"""``fleet web`` as a real server process: it serves the pages, asks for credentials, hides its secret."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from ..cli.conftest import invoke
from .conftest import AUTH, PASSWORD, USER, Seeded, Server


def get(url: str, headers: dict[str, str]) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_server_serves_pages_behind_basic_auth(server: Server, seeded: Seeded) -> None:
    status, html = get(f"{server.url}/pipeline", AUTH)
    assert status == 200 and '<span id="total-bets">4</span>' in html
    assert get(f"{server.url}/pipeline", {})[0] == 401
    assert get(f"{server.url}/metrics", {})[0] == 401
    status, text = get(f"{server.url}/metrics", AUTH)
    assert status == 200 and "fleet_bets{" in text
    assert "fleet web console on http://127.0.0.1:" in server.log.read_text()


def test_the_password_is_not_in_the_process_list(server: Server) -> None:
    cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes().decode()
    assert PASSWORD not in cmdline and USER not in cmdline


def test_fleet_web_is_a_command_of_the_cli() -> None:
    ran = invoke("web", "--help")
    assert ran.code == 0 and "--port" in ran.out and "password" not in ran.out.lower()
