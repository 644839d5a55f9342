"""The system clock (it lives in :mod:`retouraanvraag.ports`, where the core reaches it)."""

from __future__ import annotations

from retouraanvraag.ports import SystemClock

__all__ = ["SystemClock"]
