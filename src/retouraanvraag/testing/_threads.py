"""Run work in several threads released at once: the one race harness the suites share."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_at_once(count: int, target: Callable[[int], object]) -> list[object]:
    """Run ``target(n)`` for each ``n`` in ``range(count)`` in threads released at once.

    Returns what each call returned or raised, in order of ``n``.
    """
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(n: int) -> None:
        try:
            barrier.wait()
            results[n] = target(n)
        except BaseException as exc:  # noqa: BLE001 - the caller inspects what came out
            results[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def errors_of(results: list[object]) -> list[BaseException]:
    """The exceptions among ``run_at_once``'s results."""
    return [r for r in results if isinstance(r, BaseException)]
