"""JSON in and out for requests and effects (storage rows, idempotency records, the CLI).

One cattrs converter knows the few types JSON lacks: aware datetimes (ISO 8601), bytes
(base64), frozensets (sorted lists) and enums (their values). Reading back never lets a raw
decoding error out: whatever the text is, it decodes or raises
:class:`~retouraanvraag.errors.InvalidInput`, naming the field. Reading back is strict: every
value must have its field's JSON type (text, a whole number, a list), so a damaged row is
refused rather than read as something else (``None`` as the text ``"None"``, 1.9 as 1).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import typing
from collections.abc import Callable
from typing import Any, Final, TypeVar

import cattrs
from cattrs.gen import make_dict_unstructure_fn, override

from retouraanvraag.errors import InvalidInput
from retouraanvraag.model import (
    Actor,
    Command,
    Effect,
    Event,
    HistoryEntry,
    HistoryEvent,
    ReturnRequest,
)

_T = TypeVar("_T")

__all__ = [
    "converter",
    "effect_from_json",
    "effect_to_json",
    "event_from_json",
    "event_to_json",
    "request_from_json",
    "request_to_json",
]

converter = cattrs.Converter(forbid_extra_keys=True)
converter.register_unstructure_hook(dt.datetime, lambda d: d.isoformat())
converter.register_structure_hook(dt.datetime, lambda v, _: _parse_datetime(v))
converter.register_unstructure_hook(bytes, lambda b: base64.b64encode(b).decode("ascii"))
converter.register_structure_hook(bytes, lambda v, _: base64.b64decode(v, validate=True))
converter.register_unstructure_hook_func(lambda t: getattr(t, "__origin__", t) is frozenset, sorted)
converter.register_unstructure_hook(Actor, str)
converter.register_structure_hook(Actor, lambda v, _: Actor.parse(v))
# A history entry's command is a Command or an effect's HistoryEvent: the raw value goes to the
# entry, whose converter tells which (and refuses anything else), so it is read once.
converter.register_structure_hook(Command | HistoryEvent, lambda v, _: v)
# A history entry no versioned rules decided is written as before versions existed.
converter.register_unstructure_hook(
    HistoryEntry,
    make_dict_unstructure_fn(HistoryEntry, converter, rules_version=override(omit_if_default=True)),
)
# An effect without an event is written as before events existed: no "event" key.
converter.register_unstructure_hook(
    Effect, make_dict_unstructure_fn(Effect, converter, event=override(omit_if_default=True))
)


def _parse_datetime(value: object) -> dt.datetime:
    if not isinstance(value, str):
        raise InvalidInput(f"expected an ISO 8601 timestamp, not {type(value).__name__}")
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise InvalidInput(f"timestamp {value!r} has no time zone")
    return parsed


def request_to_json(request: ReturnRequest) -> str:
    """Serialise a request to compact JSON."""
    return json.dumps(converter.unstructure(request), separators=(",", ":"), ensure_ascii=False)


def request_from_json(text: str | bytes) -> ReturnRequest:
    """Read a request back; validators run, so a corrupt row fails loudly.

    Raises:
        InvalidInput: the text is not JSON describing a valid request.
    """
    return _from_json(text, ReturnRequest, "return request")


def request_to_dict(request: ReturnRequest) -> dict[str, Any]:
    """The request as plain JSON-ready data."""
    data: dict[str, Any] = converter.unstructure(request)
    return data


def effect_to_json(effect: Effect) -> str:
    """Serialise an effect."""
    return json.dumps(converter.unstructure(effect), separators=(",", ":"))


def effect_from_json(text: str | bytes) -> Effect:
    """Read an effect back; validators run, so a corrupt row fails loudly.

    Raises:
        InvalidInput: the text is not JSON describing a valid effect.
    """
    return _from_json(text, Effect, "effect")


def event_to_json(event: Event) -> str:
    """Serialise an event: the body a webhook posts (compact, keys in a fixed order)."""
    return json.dumps(converter.unstructure(event), separators=(",", ":"), ensure_ascii=False)


def event_from_json(text: str | bytes) -> Event:
    """Read an event back (a receiver's side of a webhook).

    Raises:
        InvalidInput: the text is not JSON describing a valid event.
    """
    return _from_json(text, Event, "event")


def _from_json(text: str | bytes, kind: type[_T], name: str) -> _T:
    try:
        return converter.structure(json.loads(text), kind)
    # The text is untrusted (a stored row, a file): whatever decoding it raises means "not a
    # valid one". That includes cattrs' own errors, a RecursionError from JSON nested deeper
    # than the interpreter's stack, and a validator's ValueError or TypeError.
    except Exception as exc:
        raise InvalidInput(f"not a valid {name}: {_first_problem(exc)}") from exc


def _first_problem(exc: BaseException) -> str:
    """The innermost error, placed at its path (``items[0].quantity: …``)."""
    path = ""
    while isinstance(exc, cattrs.BaseValidationError) and exc.exceptions:
        exc = exc.exceptions[0]
        for note in getattr(exc, "__notes__", ()):
            if isinstance(note, cattrs.AttributeValidationNote):
                path += f".{note.name}" if path else note.name
                break
            if isinstance(note, cattrs.IterableValidationNote):
                path += f"[{note.index}]"
                break
    if isinstance(exc, InvalidInput) and path:
        return str(exc.at(path))
    return f"{path}: {exc}" if path else str(exc)


# -- reading back: every JSON value must have the type its field has ---------------------------
#
# cattrs converts leniently by default: ``str(None)`` for a missing name, ``int(1.9)`` for a
# quantity, the characters of a string for a list. Stored JSON is written by this module, so a
# value of another type means a damaged or hand-written row: refuse it rather than hand out
# something else than what was stored. Registered here, after the hooks above, and only for
# structuring (writing is unaffected).

_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _json_type(value: object) -> str:
    """The JSON name of a decoded value's type (the value itself stays out of messages)."""
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "text", list: "a list"}
    return names.get(type(value), "an object")


def _strict_text(value: object, kind: type[str]) -> str:
    """Text for a ``str`` field, or for a subclass of it (a ``StrEnum``: its member)."""
    if type(value) is not str:
        raise InvalidInput(f"expected text, not {_json_type(value)}")
    if not value.isascii() and _SURROGATE.search(value):
        raise InvalidInput("text holds a lone surrogate (not a character)")
    if kind is str:
        return value
    try:
        return kind(value)
    except ValueError:
        raise InvalidInput(f"not a known {kind.__name__}") from None


def _strict_integer(value: object, kind: type[int]) -> int:
    """A whole number for an ``int`` field, or for a subclass of it (an ``IntEnum``)."""
    if type(value) is not int:
        raise InvalidInput(f"expected a whole number, not {_json_type(value)}")
    return value if kind is int else kind(value)


def _strict_boolean(value: object, _kind: object) -> bool:
    if type(value) is not bool:
        raise InvalidInput(f"expected true or false, not {_json_type(value)}")
    return value


def _is_collection(kind: object) -> bool:
    """``tuple[X, ...]`` or ``frozenset[X]``: stored as a JSON list."""
    origin = typing.get_origin(kind)
    arguments = typing.get_args(kind)
    if origin is tuple:
        return len(arguments) == 2 and arguments[1] is Ellipsis  # noqa: PLR2004
    return origin is frozenset and len(arguments) == 1


def _strict_collection(kind: Any) -> Callable[[object, object], object]:  # noqa: ANN401
    item = typing.get_args(kind)[0]
    structure_item = converter.get_structure_hook(item)
    container = tuple if typing.get_origin(kind) is tuple else frozenset

    def structure(value: object, _kind: object) -> object:
        if type(value) is not list:
            raise InvalidInput(f"expected a list, not {_json_type(value)}")
        elements = []
        for index, element in enumerate(value):
            try:
                elements.append(structure_item(element, item))
            except Exception as exc:  # noqa: BLE001 - raised again, with its place
                exc.add_note(cattrs.IterableValidationNote(f"@ index {index}", index, item))
                raise cattrs.IterableValidationError("a list element", [exc], kind) from None
        return container(elements)

    return structure


# By class: subclasses (enums, ``bool`` for ``int``) reach these hooks too, as they reached
# cattrs' own; ``bool`` has its own so that ``1`` is no ``True``.
converter.register_structure_hook(str, _strict_text)
converter.register_structure_hook(int, _strict_integer)
converter.register_structure_hook(bool, _strict_boolean)
converter.register_structure_hook_factory(_is_collection, _strict_collection)
