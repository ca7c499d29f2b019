"""The shared protocols file: it loads, its hash follows its bytes, bad files are clear errors."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from fleet.definitions.pipeline import Pipeline, validate_pipeline
from fleet.definitions.protocols import (
    PROTOCOLS_FILENAME,
    LoadedProtocols,
    load_protocols,
    parse_version,
    version_known,
)
from fleet.errors import ProtocolError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "protocols"


def shipped_data() -> dict[str, object]:
    data = yaml.safe_load((SHIPPED / PROTOCOLS_FILENAME).read_text())
    assert isinstance(data, dict)
    return data


def write(directory: Path, data: object) -> Path:
    path = directory / PROTOCOLS_FILENAME
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def load_bad(directory: Path, data: object) -> ProtocolError:
    write(directory, data)
    with pytest.raises(ProtocolError) as info:
        load_protocols(directory)
    return info.value


def pipeline_with(sla: float | None = 12) -> Pipeline:
    return validate_pipeline(
        {
            "initial_stage": "new",
            "creators": ["maker"],
            "stages": [{"name": "new", "sla_hours": sla}, {"name": "done", "terminal": True}],
            "transitions": [{"from": "new", "to": "done", "owner": "closer"}],
        },
        "test",
    )


# --- the shipped file -------------------------------------------------------------


def test_shipped_file_loads_with_the_documented_numbers() -> None:
    loaded = load_protocols(SHIPPED)
    p = loaded.protocols
    assert loaded.version == "1.0" and p.version == "1.0"
    assert (p.retry.attempts, p.retry.initial_delay_s, p.retry.max_delay_s) == (3, 0.5, 8)
    assert p.retry.jitter_s == 0.25
    assert (p.task_retry.max_retries, p.task_retry.backoff_max_s) == (5, 600)
    assert p.escalation.max_consecutive_failures == 3
    assert p.escalation.oscillation_heartbeats == 3
    assert p.escalation.claim_ttl_s == 300 and p.escalation.drift_window_h == 24
    assert p.logging.format == "compact"
    assert p.logging.fields == ("agent", "heartbeat", "actions", "at", "duration")
    assert any("enforcer" in rule for rule in p.handoff_rules)
    assert loaded.path == SHIPPED / PROTOCOLS_FILENAME
    assert len(loaded.hash) == 16 and int(loaded.hash, 16) >= 0


def test_the_settings_point_tests_at_the_shipped_file() -> None:
    assert Path(os.environ["FLEET_PROTOCOLS_DIR"]) == SHIPPED


# --- the hash ---------------------------------------------------------------------


def test_hash_is_stable_for_the_same_bytes(tmp_path: Path) -> None:
    write(tmp_path, shipped_data())
    assert load_protocols(tmp_path).hash == load_protocols(tmp_path).hash


def test_hash_changes_when_the_content_changes(tmp_path: Path) -> None:
    # Given a valid file
    data = shipped_data()
    write(tmp_path, data)
    before = load_protocols(tmp_path)
    # When one number changes (the version does not)
    data["retry"] = {**data["retry"], "attempts": 4}  # type: ignore[dict-item]
    write(tmp_path, data)
    after = load_protocols(tmp_path)
    # Then the version is the same but the hash tells the two files apart
    assert after.version == before.version
    assert after.hash != before.hash
    assert after.protocols.retry.attempts == 4


def test_even_a_comment_changes_the_hash(tmp_path: Path) -> None:
    text = (SHIPPED / PROTOCOLS_FILENAME).read_text()
    write(tmp_path, text)
    first = load_protocols(tmp_path).hash
    write(tmp_path, text + "\n# edited\n")
    assert load_protocols(tmp_path).hash != first


# --- malformed files --------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError) as info:
        load_protocols(tmp_path)
    assert "file not found" in str(info.value)
    assert str(tmp_path / PROTOCOLS_FILENAME) in str(info.value)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError, match="file not found"):
        load_protocols(tmp_path / "nowhere")


def test_unreadable_path(tmp_path: Path) -> None:
    (tmp_path / PROTOCOLS_FILENAME).mkdir()  # a directory where the file should be
    with pytest.raises(ProtocolError, match="cannot read"):
        load_protocols(tmp_path)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    error = load_bad(tmp_path, 'version: "1.0"\nretry: [unclosed\n')
    assert "not valid YAML" in str(error)
    assert "line" in str(error)


def test_empty_file(tmp_path: Path) -> None:
    error = load_bad(tmp_path, "")
    assert "the file is empty" in str(error)


def test_not_a_mapping(tmp_path: Path) -> None:
    error = load_bad(tmp_path, "- a\n- b\n")
    assert "expected a mapping" in str(error) and "list" in str(error)


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    error = load_bad(tmp_path, {**shipped_data(), "agent_versions": {"x": "1.0"}})
    assert "agent_versions" in str(error)


def test_missing_section_is_an_error(tmp_path: Path) -> None:
    data = shipped_data()
    del data["escalation"]
    error = load_bad(tmp_path, data)
    assert error.problems == ["escalation: Field required"]


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    data = shipped_data()
    data["retry"] = {"attempts": 0, "initial_delay_s": 1, "max_delay_s": 8, "jitter_s": 0}
    data["escalation"] = {**data["escalation"], "claim_ttl_s": -1}  # type: ignore[dict-item]
    error = load_bad(tmp_path, data)
    assert len(error.problems) == 2
    assert any(p.startswith("retry.attempts:") for p in error.problems)
    assert any(p.startswith("escalation.claim_ttl_s:") for p in error.problems)


def test_max_delay_below_initial_delay(tmp_path: Path) -> None:
    data = shipped_data()
    data["retry"] = {"attempts": 3, "initial_delay_s": 5, "max_delay_s": 1, "jitter_s": 0}
    assert "max_delay_s must not be below initial_delay_s" in str(load_bad(tmp_path, data))


@pytest.mark.parametrize("version", ["1", "1.0.0", "v1.0", "one", "01.0", ""])
def test_bad_version_format(tmp_path: Path, version: str) -> None:
    error = load_bad(tmp_path, {**shipped_data(), "version": version})
    assert "is not MAJOR.MINOR" in str(error)


def test_unquoted_version_is_explained(tmp_path: Path) -> None:
    text = (SHIPPED / PROTOCOLS_FILENAME).read_text().replace('version: "1.0"', "version: 1.0")
    error = load_bad(tmp_path, text)
    assert 'version: must be a quoted string like "1.0"' in str(error)


def test_unknown_format_major(tmp_path: Path) -> None:
    error = load_bad(tmp_path, {**shipped_data(), "version": "2.0"})
    assert "unknown protocols format '2.0'" in str(error)


def test_history_cannot_be_newer_than_the_current_version(tmp_path: Path) -> None:
    history = [{"version": "1.3", "summary": "from the future"}]
    error = load_bad(tmp_path, {**shipped_data(), "version": "1.2", "history": history})
    assert "newer than '1.2'" in str(error)


def test_negative_sla_override(tmp_path: Path) -> None:
    error = load_bad(tmp_path, {**shipped_data(), "stage_sla_hours": {"sourced": 0}})
    assert "SLA hours must be positive" in str(error)


def test_error_is_one_line(tmp_path: Path) -> None:
    error = load_bad(tmp_path, {**shipped_data(), "version": "x", "retry": None})
    assert "\n" not in str(error)
    assert str(error).startswith(f"invalid protocols {tmp_path / PROTOCOLS_FILENAME}: 2 problem(s)")


# --- versions and SLAs ------------------------------------------------------------


def loaded_with(tmp_path: Path, **changes: object) -> LoadedProtocols:
    write(tmp_path, {**shipped_data(), **changes})
    return load_protocols(tmp_path)


def test_version_known_covers_current_and_history(tmp_path: Path) -> None:
    history = [{"version": "1.0", "summary": "first"}, {"version": "1.1", "summary": "retries"}]
    loaded = loaded_with(tmp_path, version="1.2", history=history)
    assert loaded.known_versions == ["1.2", "1.1", "1.0"]
    assert version_known(loaded, "1.2") and version_known(loaded, "1.0")
    assert not version_known(loaded, "1.3")
    assert not version_known(loaded, "0.9")


def test_parse_version() -> None:
    assert parse_version("1.10") == (1, 10)
    assert parse_version("1.10") > parse_version("1.9")
    with pytest.raises(ValueError, match="MAJOR.MINOR"):
        parse_version("1.x")


def test_effective_sla_prefers_the_override(tmp_path: Path) -> None:
    pipeline = pipeline_with(sla=12)
    plain = loaded_with(tmp_path).protocols
    assert plain.effective_sla(pipeline, "new") == timedelta(hours=12)
    overridden = loaded_with(tmp_path, stage_sla_hours={"new": 1.5}).protocols
    assert overridden.effective_sla(pipeline, "new") == timedelta(hours=1.5)


def test_effective_sla_none_for_terminal_unknown_or_unset(tmp_path: Path) -> None:
    protocols = loaded_with(tmp_path, stage_sla_hours={"done": 1}).protocols
    assert protocols.effective_sla(pipeline_with(), "done") is None
    assert protocols.effective_sla(pipeline_with(), "ghost") is None
    assert protocols.effective_sla(pipeline_with(sla=None), "new") is None


def test_unknown_sla_stages(tmp_path: Path) -> None:
    protocols = loaded_with(tmp_path, stage_sla_hours={"new": 1, "done": 2, "ghost": 3}).protocols
    assert protocols.unknown_sla_stages(pipeline_with()) == ["done", "ghost"]


def test_stamp_carries_version_and_hash() -> None:
    ledger = pytest.importorskip("fleet.ledger")
    loaded = load_protocols(SHIPPED)
    assert loaded.stamp == ledger.ProtocolStamp(version=loaded.version, hash=loaded.hash)


# --- size cap and parse-once ---------------------------------------------------------


def test_a_file_over_the_cap_is_refused_before_parsing(tmp_path: Path) -> None:
    # Given a file one byte over the cap whose content is not even YAML
    write(tmp_path, "[" * 1001)
    # When it is loaded with a 1000-byte cap
    with pytest.raises(ProtocolError) as info:
        load_protocols(tmp_path, max_bytes=1000)
    # Then it is refused for its size, in one line, without being parsed
    message = str(info.value)
    assert "file too large" in message and "limit of 1,000 bytes" in message
    assert "FLEET_PROTOCOLS_MAX_BYTES" in message
    assert "YAML" not in message and "\n" not in message


def test_the_default_cap_comes_from_the_settings(tmp_path: Path) -> None:
    from fleet.constants import MAX_PROTOCOLS_BYTES
    from fleet.settings import get_settings

    assert get_settings().protocols_max_bytes == MAX_PROTOCOLS_BYTES
    write(tmp_path, "#" * (MAX_PROTOCOLS_BYTES + 1))
    with pytest.raises(ProtocolError, match="file too large"):
        load_protocols(tmp_path)


def test_the_same_content_is_parsed_once(tmp_path: Path) -> None:
    # Given the shipped protocols in a folder of their own
    write(tmp_path, (SHIPPED / PROTOCOLS_FILENAME).read_text())
    # When two heartbeats load them
    first, second = load_protocols(tmp_path), load_protocols(tmp_path)
    # Then the second reuses what the first validated
    assert second.protocols is first.protocols and second.hash == first.hash
    # And a changed file is parsed anew
    write(tmp_path, (SHIPPED / PROTOCOLS_FILENAME).read_text() + "# changed\n")
    changed = load_protocols(tmp_path)
    assert changed.protocols is not first.protocols and changed.hash != first.hash


def test_an_invalid_content_stays_invalid_from_the_cache(tmp_path: Path) -> None:
    write(tmp_path, "version: [unclosed\n")
    for _ in range(2):
        with pytest.raises(ProtocolError, match="not valid YAML"):
            load_protocols(tmp_path)


def test_an_oversized_file_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    from fleet.constants import MAX_PROTOCOLS_BYTES

    path = write(tmp_path, shipped_data())
    with path.open("a") as out:
        out.write("#" * MAX_PROTOCOLS_BYTES + "\n")  # valid YAML (a comment), just too big
    with pytest.raises(ProtocolError) as caught:
        load_protocols(tmp_path)
    assert "limit" in str(caught.value) and str(path) in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1


def test_the_file_is_parsed_once_per_content_and_again_after_an_edit(tmp_path: Path) -> None:
    from fleet.definitions import protocols as module

    write(tmp_path, shipped_data())
    first = load_protocols(tmp_path)
    again = load_protocols(tmp_path)
    assert again.protocols is first.protocols  # same bytes: the parsed model is reused
    edited = {**shipped_data(), "version": "1.9"}
    write(tmp_path, edited)
    changed = load_protocols(tmp_path)
    assert changed.version == "1.9" and changed.hash != first.hash
    assert len(module._PARSED) <= module._PARSED_KEEP
