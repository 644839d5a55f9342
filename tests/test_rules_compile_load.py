"""Loading a rule set compiles it: what the compiled code holds, and what building it leaves."""

from __future__ import annotations

import ast
import datetime as dt
import gc
import importlib
import types
from collections.abc import Iterator

import pytest

from retouraanvraag import rules
from retouraanvraag.model import Decision

from .test_rules import item, request

_compiler = importlib.import_module("retouraanvraag.rules._compiler")

#: Values a merchant might type that read like code...
CODE_LIKE = ("__import__('os').system('echo pwned')", "') or True or ('", "x; import os #")
#: ... or like the compiler's own names (a local, a constant's name).
NAME_LIKE = ("r0", "_c3")
HOSTILE = CODE_LIKE + NAME_LIKE


def _hostile_rules() -> str:
    lines = []
    for n, value in enumerate(HOSTILE):
        # Three one-comparison rules on a field are looked up in a table, the others tested.
        lines.append(f'REGEL "sku {n}": ALS SKU BEGINT MET "{value}" DAN Afwijzen met reden "x"')
        lines.append(f'REGEL "tag {n}": ALS Tags BEVAT "{value}" DAN Goedkeuren met label')
        lines.append(
            f'REGEL "name {n}": ALS Artikelnaam IS "{value}" EN Van land IS Nederland'
            f' OF Kortingscode IS "{value}" DAN Retouraanvraag inschakelen'
        )
    return "\n".join(lines) + "\n"


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _code_objects(constant)


def test_compiled_code_holds_no_merchant_text() -> None:
    ruleset = rules.parse(_hostile_rules())
    condition = ruleset.rules[2].condition
    predicate = _compiler.compile_condition_function(condition, dt.UTC, ruleset.reasons)
    functions = [ruleset._decide, ruleset._matches(), predicate]
    for function in functions:
        for code in _code_objects(function.__code__):
            # Numbers, booleans and None only: every text sits in the namespace.
            assert all(not isinstance(c, str | bytes) for c in code.co_consts), code.co_consts
            words = {*code.co_names, *code.co_varnames}
            assert not words & {v.casefold() for v in CODE_LIKE}


def test_a_value_that_reads_like_a_generated_name_is_still_a_value() -> None:
    ruleset = rules.parse(_hostile_rules())
    # "r0" is also the name of a local in the compiled code: as a value, it is only compared.
    assert ruleset.evaluate(request(item(sku="r0-123"))).decision is Decision.REJECT
    hit = ruleset.evaluate(request(item(sku="x", name="_C3"), country="NL"))
    assert hit.decision is Decision.REVIEW
    assert hit.rule == "name 4"
    miss = ruleset.evaluate(request(item(sku="x", name="r1"), country="DE"))
    assert miss.decision is None


def _live_nodes() -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, ast.AST))


def test_the_syntax_tree_is_gone_before_the_collector_resumes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A collection walks every live node: the tree must be freed while the collector pauses.
    text = (
        _hostile_rules() + "ALS Artikelwaarde > €5,00 EN Van land IS BE DAN Goedkeuren met label\n"
    )
    baseline = _live_nodes()  # the shared nodes (operators, ``break``) live on
    seen: list[int] = []
    enable = gc.enable

    def counting_enable() -> None:
        seen.append(_live_nodes() - baseline)
        enable()

    monkeypatch.setattr(gc, "enable", counting_enable)
    ruleset = rules.parse(text)
    ruleset.trace_lines(request(item()))
    assert len(seen) >= 2  # the decider, then the trace's function
    assert seen == [0] * len(seen)


def test_building_twice_gives_the_same_code() -> None:
    text = _hostile_rules()
    first, second = rules.parse(text), rules.parse(text)
    for a, b in ((first._decide, second._decide), (first._matches(), second._matches())):
        assert a.__code__.co_code == b.__code__.co_code
        assert a.__code__.co_names == b.__code__.co_names
        assert list(a.__code__.co_positions()) == list(b.__code__.co_positions())
