"""JSON in and out for requests and effects (storage rows, idempotency records, the CLI).

One cattrs converter knows the few types JSON lacks: aware datetimes (ISO 8601), bytes
(base64), frozensets (sorted lists) and enums (their values). Reading back never lets a raw
decoding error out: whatever the text is, it decodes or raises
:class:`~retouraanvraag.errors.InvalidInput`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any, TypeVar

import cattrs

from retouraanvraag.errors import InvalidInput
from retouraanvraag.model import Effect, ReturnRequest

_T = TypeVar("_T")

__all__ = [
    "converter",
    "effect_from_json",
    "effect_to_json",
    "request_from_json",
    "request_to_json",
]

converter = cattrs.Converter(forbid_extra_keys=True)
converter.register_unstructure_hook(dt.datetime, lambda d: d.isoformat())
converter.register_structure_hook(dt.datetime, lambda v, _: _parse_datetime(v))
converter.register_unstructure_hook(bytes, lambda b: base64.b64encode(b).decode("ascii"))
converter.register_structure_hook(bytes, lambda v, _: base64.b64decode(v, validate=True))
converter.register_unstructure_hook_func(lambda t: getattr(t, "__origin__", t) is frozenset, sorted)


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


def _from_json(text: str | bytes, kind: type[_T], name: str) -> _T:
    try:
        return converter.structure(json.loads(text), kind)
    # The text is untrusted (a stored row, a file): whatever decoding it raises means "not a
    # valid one". That includes cattrs' own errors, a RecursionError from JSON nested deeper
    # than the interpreter's stack, and a validator's ValueError or TypeError.
    except Exception as exc:
        raise InvalidInput(f"not a valid {name}: {_first_problem(exc)}") from exc


def _first_problem(exc: BaseException) -> str:
    if isinstance(exc, cattrs.BaseValidationError) and exc.exceptions:
        return _first_problem(exc.exceptions[0])
    return str(exc)
