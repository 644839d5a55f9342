"""A request records which edition of the shop's rules decided it (issue 10, rules editor)."""

from __future__ import annotations

from pathlib import Path

import pytest

from retouraanvraag import InvalidInput, Policy, rules
from retouraanvraag._codec import request_from_json, request_to_json
from retouraanvraag.adapters import MemoryStorage, SqliteStorage
from retouraanvraag.model import Command, Status

from .conftest import SHOP, build_world

DUTCH_AUTO = "ALS Van land IS Nederland DAN Goedkeuren met label"


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_the_deciding_entry_records_the_rules_version(store: str, tmp_path: Path) -> None:
    storage = MemoryStorage() if store == "memory" else SqliteStorage(tmp_path / "v.sqlite3")
    world = build_world(storage, Policy(rules=rules.parse(DUTCH_AUTO, version="2026-12-01.3")))
    approved = world.desk.submit(world.new_request())
    assert approved.status is Status.APPROVED
    decision = approved.history[-1]
    assert decision.command is Command.APPROVE_WITH_LABEL
    assert decision.rules_version == "2026-12-01.3"
    assert approved.history[0].rules_version is None  # the submission itself
    assert world.storage.get(SHOP, approved.id).history == approved.history
    # Waiting for review: the submission's entry, which carries the trace, carries the version.
    waiting = world.desk.submit(world.new_request(from_country="BE"))
    assert waiting.status is Status.REQUESTED
    assert waiting.history[-1].rules_version == "2026-12-01.3"
    # A later decision by staff is no rules decision.
    rejected = world.desk.reject(SHOP, waiting.id, reason="Te laat", actor="anna")
    assert rejected.history[-1].rules_version is None


def test_an_unversioned_entry_is_stored_as_before_versions_existed() -> None:
    world = build_world(MemoryStorage(), Policy(rules=rules.parse(DUTCH_AUTO)))
    request = world.desk.submit(world.new_request())
    text = request_to_json(request)
    assert "rules_version" not in text
    assert request_from_json(text) == request
    versioned = build_world(MemoryStorage(), Policy(rules=rules.parse(DUTCH_AUTO, version="7")))
    stored = versioned.desk.submit(versioned.new_request())
    assert '"rules_version":"7"' in request_to_json(stored)
    assert request_from_json(request_to_json(stored)) == stored


@pytest.mark.parametrize("version", ["", "   ", "a\nb", "x" * 65, "\u2028", 7])
def test_a_version_that_is_not_one_short_line_is_refused(version: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        rules.parse(DUTCH_AUTO, version=version)  # type: ignore[arg-type]
    assert caught.value.field == "version"


def test_the_version_is_not_part_of_the_rules_meaning() -> None:
    assert rules.parse(DUTCH_AUTO, version="1") == rules.parse(DUTCH_AUTO, version="2")
