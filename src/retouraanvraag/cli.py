"""The ``retouraanvraag`` command: a merchant's work from a terminal, and the rule tools.

    retouraanvraag requests list --db returns.sqlite3 --shop my-shop [--tab incoming] [--json]
    retouraanvraag requests show|approve|reject|cancel|receive|complete ID --db … --shop …
    retouraanvraag triage RULES REQUESTS.jsonl [--out OUTCOMES.jsonl] [--trace]
    retouraanvraag dispatch --db … --maildir DIR --labels fake --payments fake [--worker]
        [--webhook-url URL --webhook-secret-env NAME]
    retouraanvraag db migrate --db returns.sqlite3
    retouraanvraag rules check|explain|fmt|explain-code …
    retouraanvraag --version

Every error a user can cause (a missing file, a bad ``--db``, an unknown request, a command the
request's status does not allow, bad JSON, a bad actor) is one line on stderr and a non-zero
exit: 1 when the rules have problems or the store refused the command, 2 for bad usage or
input that cannot be read. Messages name files, fields and ids, never a customer's name or
address. Tables and progress bars use ``rich`` (the ``cli`` extra) on a terminal, plain text
otherwise. Rule diagnostics print like a compiler's, in the rule file's language. The command
line reference is ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import select
import signal
import socket
import sqlite3
import sys
import textwrap
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, Final, NoReturn, Protocol, Self, TextIO

from retouraanvraag import __version__
from retouraanvraag.errors import (
    IdempotencyConflict,
    InvalidInput,
    NotFound,
    PortError,
    PortRejected,
    RetouraanvraagError,
    RuleError,
    TransitionNotAllowed,
)

if TYPE_CHECKING:
    from retouraanvraag.adapters.webhook import WebhookSink
    from retouraanvraag.dispatcher import Dispatcher, DispatchReport
    from retouraanvraag.model import Decision, Label, Money, ReturnRequest
    from retouraanvraag.ports import OutboxEntry, Storage
    from retouraanvraag.rules import RuleSet
    from retouraanvraag.workflow import Desk

    class _Store(Storage, Protocol):
        """A store the command line opened, and closes."""

        def close(self) -> None: ...


__all__ = ["main"]

#: Exit codes: success; problems in the rules or a command the store refused; bad usage or
#: unreadable input. An interrupted command exits 130, as shells expect.
OK, PROBLEMS, USAGE, INTERRUPTED = 0, 1, 2, 130

#: Where ``--db`` and ``--shop`` default from, when set.
DB_VARIABLE: Final = "RETOURAANVRAAG_DB"
SHOP_VARIABLE: Final = "RETOURAANVRAAG_SHOP"

_TABS: Final = ("requests", "incoming", "history", "attention")
_PROG: Final = "retouraanvraag"
_log = logging.getLogger("retouraanvraag")


class _Failure(Exception):
    """A user's error, reported as one line on stderr with an exit code (never a traceback)."""

    def __init__(self, message: str, code: int = USAGE) -> None:
        super().__init__(" ".join(message.split()))
        self.code = code


# -- the parser ----------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, pointing at ``--help``."""

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: MESSAGE (see PROG --help)`` and exit with the usage code."""
        self.exit(USAGE, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


_MIGRATE_EXAMPLES: Final = """
    retouraanvraag db migrate --db returns.sqlite3
    retouraanvraag db migrate --db postgresql://returns@db.internal/returns
"""


def _examples(text: str) -> str:
    return "examples:\n" + textwrap.indent(textwrap.dedent(text).strip("\n"), "  ")


def _add(
    group: argparse._SubParsersAction[_Parser],
    name: str,
    summary: str,
    examples: str,
    parents: Sequence[_Parser] = (),
) -> _Parser:
    return group.add_parser(
        name,
        help=summary,
        description=summary[0].upper() + summary[1:] + ".",
        epilog=_examples(examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=list(parents),
    )


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 500:  # noqa: PLR2004 - the storage port's page sizes
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 500, not {text!r}")
    return value


def _positive(kind: Callable[[str], float]) -> Callable[[str], Any]:
    def read(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be a number above 0, not {text!r}")
        return value

    return read


def _store_options(*, shop: bool) -> _Parser:
    """``--db`` (and ``--shop``), required unless their environment variables are set."""
    options = _Parser(add_help=False)
    db = os.environ.get(DB_VARIABLE)
    options.add_argument(
        "--db",
        default=db,
        required=db is None,
        metavar="PATH",
        help=f"the SQLite database file (default: ${DB_VARIABLE})",
    )
    if shop:
        name = os.environ.get(SHOP_VARIABLE)
        options.add_argument(
            "--shop",
            default=name,
            required=name is None,
            metavar="SHOP_ID",
            help=f"the shop whose requests these are (default: ${SHOP_VARIABLE})",
        )
        options.add_argument(
            "--timezone",
            default="Europe/Amsterdam",
            help="the shop's IANA time zone, for dates and rule filters (default: %(default)s)",
        )
    return options


def _requests_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
    group = commands.add_parser(
        "requests",
        help="list, show and decide a shop's return requests",
        description="The merchant's tabs and decisions, on a store given by --db and --shop.",
        epilog=_examples(
            """
            retouraanvraag requests list --db returns.sqlite3 --shop my-shop --tab incoming
            retouraanvraag requests approve ID --db returns.sqlite3 --shop my-shop --actor anna
            retouraanvraag requests ACTION --help
            """
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    store = _store_options(shop=True)
    output = _Parser(add_help=False)
    output.add_argument("--json", action="store_true", help="print JSON instead of text")
    key = _Parser(add_help=False)
    key.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="the same key with the same arguments returns the first result, never twice",
    )

    listing = _add(
        actions,
        "list",
        "list a tab: requests, incoming returns, history, or needing attention",
        """
        retouraanvraag requests list --db returns.sqlite3 --shop my-shop
        retouraanvraag requests list --db returns.sqlite3 --shop my-shop --tab incoming
        retouraanvraag requests list --db returns.sqlite3 --shop my-shop \\
            --rule "Van land IS Nederland" --json
        retouraanvraag requests list --db returns.sqlite3 --shop my-shop --cursor CURSOR
        """,
        (store, output),
    )
    listing.add_argument("--tab", choices=_TABS, default="requests")
    which = listing.add_mutually_exclusive_group()
    which.add_argument("--rejected", action="store_true", help="requests tab: only rejected ones")
    which.add_argument("--waiting", action="store_true", help="requests tab: only undecided ones")
    listing.add_argument(
        "--rule",
        metavar="CONDITION",
        help='requests and incoming tabs: a rule condition to filter by ("Van land IS NL")',
    )
    listing.add_argument("--limit", type=_limit, default=50, help="page size, 1 to 500")
    listing.add_argument("--cursor", help="the next page, as the previous page printed it")

    show = _add(
        actions,
        "show",
        "show one request with its history (who, what, effects) and its outbox",
        "retouraanvraag requests show 3f2a9c… --db returns.sqlite3 --shop my-shop --json",
        (store, output),
    )
    show.add_argument("id", metavar="ID", help="the request's id")

    approve = _add(
        actions,
        "approve",
        "approve a request, with a return label (the default) or without",
        """
        retouraanvraag requests approve ID --db returns.sqlite3 --shop my-shop --actor anna
        retouraanvraag requests approve ID --db returns.sqlite3 --shop my-shop --actor anna \\
            --no-label --refund-fee --idempotency-key approve-ID
        """,
        (store, output, key),
    )
    approve.add_argument("id", metavar="ID", help="the request's id")
    approve.add_argument(
        "--no-label", action="store_true", help="the customer keeps the product: no parcel"
    )
    approve.add_argument(
        "--refund-fee", action="store_true", help="refund the return fee the customer paid"
    )
    approve.add_argument("--actor", required=True, metavar="STAFF_ID", help="who decides")

    reject = _add(
        actions,
        "reject",
        "reject a request with a reason the customer reads (a paid fee is refunded)",
        """
        retouraanvraag requests reject ID --db returns.sqlite3 --shop my-shop --actor anna \\
            --reason "De retourtermijn is verlopen."
        """,
        (store, output, key),
    )
    reject.add_argument("id", metavar="ID", help="the request's id")
    reject.add_argument("--reason", required=True, help="shown to the customer")
    reject.add_argument("--actor", required=True, metavar="STAFF_ID", help="who decides")

    cancel = _add(
        actions,
        "cancel",
        "withdraw a request before its parcel arrived (voids the label, refunds a paid fee)",
        "retouraanvraag requests cancel ID --db returns.sqlite3 --shop my-shop --actor anna",
        (store, output, key),
    )
    cancel.add_argument("id", metavar="ID", help="the request's id")
    cancel.add_argument(
        "--actor",
        default="customer",
        metavar="STAFF_ID",
        help="a staff id, or customer (the default: the customer withdrew it)",
    )

    for name, summary in (
        ("receive", "record that an approved return's parcel arrived"),
        ("complete", "close a received return"),
    ):
        command = _add(
            actions,
            name,
            summary,
            f"retouraanvraag requests {name} ID --db returns.sqlite3 --shop my-shop --actor anna",
            (store, output, key),
        )
        command.add_argument("id", metavar="ID", help="the request's id")
        command.add_argument("--actor", required=True, metavar="STAFF_ID", help="who does it")


def _rule_options() -> _Parser:
    options = _Parser(add_help=False)
    options.add_argument(
        "--timezone", default="Europe/Amsterdam", help="for days since delivery or order"
    )
    options.add_argument("--currency", default="EUR", help="the shop's currency (ISO 4217)")
    return options


def _rules_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
    group = commands.add_parser(
        "rules",
        help="check, explain and format rule files",
        description="Tools for the rule language (ALS … DAN … / IF … THEN …).",
        epilog=_examples(
            """
            retouraanvraag rules check retourregels.txt
            retouraanvraag rules ACTION --help
            """
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    rule_options = _rule_options()
    check = _add(
        actions,
        "check",
        "report every problem in a rule file (exit 1 on errors)",
        "retouraanvraag rules check retourregels.txt",
        (rule_options,),
    )
    check.add_argument("file", type=Path)

    explain = _add(
        actions,
        "explain",
        "show how the rules decide a request, comparison by comparison",
        "retouraanvraag rules explain retourregels.txt request.json --lang en",
        (rule_options,),
    )
    explain.add_argument("file", type=Path)
    explain.add_argument("request", type=Path, help="one request in the JSON form of docs/cli.md")
    explain.add_argument("--lang", choices=("nl", "en"))

    fmt = _add(
        actions,
        "fmt",
        "print the rules in canonical form, or translate them",
        """
        retouraanvraag rules fmt retourregels.txt --lang en
        retouraanvraag rules fmt retourregels.txt --check
        """,
        (rule_options,),
    )
    fmt.add_argument("file", type=Path)
    fmt.add_argument("--lang", choices=("nl", "en"))
    fmt.add_argument("--check", action="store_true", help="exit 1 when the file is not canonical")

    code = _add(
        actions,
        "explain-code",
        "explain a diagnostic's code, with an example",
        """
        retouraanvraag rules explain-code R008
        retouraanvraag rules explain-code unknown-field --lang en
        """,
    )
    code.add_argument("code", help="a code such as R008 (or its name, unknown-field)")
    code.add_argument("--lang", choices=("nl", "en"), default="nl")


def _parser() -> _Parser:
    parser = _Parser(
        prog=_PROG,
        description=(
            "Return requests from a terminal: decide them, triage a file of them by the "
            "shop's rules, run their effects, and check rule files."
        ),
        epilog=_examples(
            """
            retouraanvraag db migrate --db returns.sqlite3
            retouraanvraag requests list --db returns.sqlite3 --shop my-shop
            retouraanvraag triage retourregels.txt requests.jsonl --out outcomes.jsonl
            retouraanvraag rules check retourregels.txt
            retouraanvraag COMMAND --help
            """
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _requests_parser(commands)

    triage = _add(
        commands,
        "triage",
        "decide a file of requests (JSON Lines) by a rule file, one outcome line each",
        """
        retouraanvraag triage retourregels.txt requests.jsonl
        retouraanvraag triage retourregels.txt requests.jsonl --out outcomes.jsonl --trace
        """,
        (_rule_options(),),
    )
    triage.add_argument("file", type=Path, metavar="RULES", help="the rule file")
    triage.add_argument(
        "requests",
        type=Path,
        metavar="REQUESTS.jsonl",
        help="one request per line, in the JSON form of docs/cli.md",
    )
    triage.add_argument(
        "--out", type=Path, metavar="FILE", help="write the outcomes here (default: stdout)"
    )
    triage.add_argument("--trace", action="store_true", help="add each rule that matched")
    triage.add_argument(
        "--default",
        choices=("review", "approve_with_label"),
        default="review",
        help="the decision for items no rule decides, as the shop's policy (default: %(default)s)",
    )

    dispatch = _add(
        commands,
        "dispatch",
        "carry out the effects the outbox holds: labels, refunds, mails, events",
        """
        retouraanvraag dispatch --db returns.sqlite3 --maildir mail/ \\
            --labels fake --payments fake --sender retouren@my-shop.example --shop-name "My Shop"
        retouraanvraag dispatch --db returns.sqlite3 --maildir mail/ \\
            --labels fake --payments fake --sender retouren@my-shop.example \\
            --shop-name "My Shop" --worker --poll 2

        No carrier or payment adapter ships with retouraanvraag: --labels fake and
        --payments fake are stand-ins for trying things out (a label marked FAKE, refunds
        that move no money). In production, run a Dispatcher with your own adapters.

        With --webhook-url and --webhook-secret-env, the events of a desk with events on
        are posted, signed, to the URL:
        RETOURAANVRAAG_WEBHOOK_SECRET=… retouraanvraag dispatch … \\
            --webhook-url https://hooks.my-shop.example/returns \\
            --webhook-secret-env RETOURAANVRAAG_WEBHOOK_SECRET
        """,
        (_store_options(shop=False),),
    )
    dispatch.add_argument(
        "--maildir", type=Path, metavar="DIR", help="deliver mails into this Maildir"
    )
    dispatch.add_argument(
        "--labels", choices=("fake",), help="the carrier: only the stand-in, for trying out"
    )
    dispatch.add_argument(
        "--payments", choices=("fake",), help="the payment provider: only the stand-in"
    )
    dispatch.add_argument("--sender", metavar="ADDRESS", help="the mails' From address")
    dispatch.add_argument("--shop-name", metavar="NAME", help="the shop's name in the mails")
    dispatch.add_argument("--timezone", default="Europe/Amsterdam", help="for dates in the mails")
    dispatch.add_argument(
        "--worker", action="store_true", help="keep running until SIGINT or SIGTERM"
    )
    dispatch.add_argument(
        "--poll",
        type=_positive(float),
        default=1.0,
        metavar="SECONDS",
        help="worker: how long to wait when nothing is due (default: %(default)s)",
    )
    dispatch.add_argument(
        "--batch",
        type=_positive(int),
        default=1,
        metavar="N",
        help="worker: entries claimed at a time, finished before it stops (default: 1)",
    )
    dispatch.add_argument(
        "--webhook-url",
        metavar="URL",
        help="deliver the events a desk with events on queued: a signed POST each to URL",
    )
    dispatch.add_argument(
        "--webhook-secret-env",
        metavar="NAME",
        help="the environment variable holding the webhook's shared secret (never the secret)",
    )
    dispatch.add_argument("-v", "--verbose", action="store_true", help="log every effect done")

    database = commands.add_parser(
        "db",
        help="the database's schema",
        description="The database's schema: a SQLite file, or a PostgreSQL database.",
        epilog=_examples(_MIGRATE_EXAMPLES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    db_actions = database.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add(
        db_actions,
        "migrate",
        "create the database, or bring its schema up to date, and print its version",
        _MIGRATE_EXAMPLES,
        (_store_options(shop=False),),
    )
    _rules_parser(commands)
    return parser


# -- the entry point -----------------------------------------------------------------------


def main(
    argv: list[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the command line; returns the exit code (0 success, 1 problems, 2 usage)."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else USAGE
    run = {
        "requests": _requests,
        "triage": _triage,
        "dispatch": _dispatch,
        "db": _migrate,
        "rules": _rules,
    }[args.command]
    with _logs(err, verbose=getattr(args, "verbose", False)):
        try:
            return run(args, out, err)
        except _Failure as failure:
            print(f"{_prog(args)}: {failure}", file=err)
            return failure.code
        except KeyboardInterrupt:
            print(f"{_prog(args)}: interrupted", file=err)
            return INTERRUPTED
        except BrokenPipeError:
            # The reader went away (`… | head`): stop quietly, and let nothing flush into the
            # closed pipe at exit.
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
            return PROBLEMS


def _prog(args: argparse.Namespace) -> str:
    parts = [_PROG, args.command]
    if getattr(args, "action", None) and args.command != "rules":
        parts.append(args.action)
    return " ".join(parts)


# -- logging: ids on one line, never a traceback --------------------------------------------

_RECORD_FIELDS: Final = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class _LineFormatter(logging.Formatter):
    """One line per record: ``warning: effect failed, will retry [request_id=… effect=…]``.

    The library's extras are ids (it never logs personal data); an exception shows as its type,
    never as a traceback.
    """

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{name}={value}"
            for name, value in record.__dict__.items()
            if name not in _RECORD_FIELDS and not name.startswith("_")
        )
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            text += f" ({type(record.exc_info[1]).__name__})"
        return " ".join(f"{text} [{extras}]".split() if extras else text.split())


@contextlib.contextmanager
def _logs(err: TextIO, *, verbose: bool) -> Iterator[None]:
    handler = logging.StreamHandler(err)
    handler.setFormatter(_LineFormatter())
    level = _log.level
    _log.addHandler(handler)
    _log.setLevel(logging.INFO if verbose else logging.WARNING)
    try:
        yield
    finally:
        _log.removeHandler(handler)
        _log.setLevel(level)


# -- output: rich on a terminal, plain text elsewhere ---------------------------------------


def _console(stream: IO[str]) -> Any:  # noqa: ANN401 - rich is optional
    """A rich console on ``stream`` if it is a terminal and rich is installed, else ``None``."""
    isatty = getattr(stream, "isatty", None)
    if isatty is None or not isatty():
        return None
    try:
        from rich.console import Console  # noqa: PLC0415 - optional (the cli extra)
    except ImportError:
        return None
    return Console(file=stream, highlight=False, markup=False, emoji=False)


def _table(
    stream: TextIO,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None = None,
    right: frozenset[int] = frozenset(),
) -> None:
    console = _console(stream)
    if console is not None:
        from rich.table import Table  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415

        table = Table(title=Text(title) if title else None)
        for i, header in enumerate(headers):
            # The first column is what a next command takes (an id): never cut or wrapped.
            width = max([len(header)] + [len(row[i]) for row in rows]) if i == 0 else None
            table.add_column(
                Text(header),
                justify="right" if i in right else "left",
                no_wrap=i == 0,
                min_width=width,
            )
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
        console.print(table)
        return
    widths = [
        max([len(header)] + [len(row[i]) for row in rows]) for i, header in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join(padded).rstrip()

    if title:
        print(title, file=stream)
    for cells in (headers, *rows):
        print(line(cells), file=stream)


def _json(stream: TextIO, data: object) -> None:
    json.dump(data, stream, ensure_ascii=False, indent=2)
    stream.write("\n")


# -- the store -----------------------------------------------------------------------------


def _is_postgresql(db: str) -> bool:
    """Whether ``--db`` names a PostgreSQL database: a URL or a libpq connection string."""
    scheme = db.partition("://")[0]
    libpq = "=" in db and any(part.startswith(("host=", "dbname=")) for part in db.split())
    return scheme.lower() in {"postgresql", "postgres"} or libpq


def _sqlite_path(db: str) -> Path:
    """``--db`` as a SQLite path; a database URL is refused without repeating it (a password)."""
    scheme, sep, _rest = db.partition("://")
    if _is_postgresql(db):
        raise _Failure("--db: this is a PostgreSQL database, not a SQLite file")
    if sep:
        raise _Failure(
            f"--db: {scheme}:// is not a store this version can open; give the path of a SQLite "
            "database file"
        )
    return Path(db)


def _open(db: str, *, create: bool = False) -> _Store:
    """The store ``--db`` names: a SQLite file, or a PostgreSQL database (URL or libpq string).

    A PostgreSQL database must have its schema already (``retouraanvraag db migrate``):
    a command that only lists or decides never changes the schema.
    """
    if _is_postgresql(db) and not create:
        return _open_postgresql(db)
    from retouraanvraag.adapters.sqlite import SqliteStorage  # noqa: PLC0415

    path = _sqlite_path(db)
    if path.is_dir():
        raise _Failure(f"{path}: is a directory, not a database file")
    if not create and not path.exists():
        raise _Failure(
            f"{path}: no such database; create it with `retouraanvraag db migrate --db {path}`"
        )
    if not path.parent.is_dir():
        raise _Failure(f"{path}: the folder {path.parent} does not exist")
    try:
        return SqliteStorage(path)
    except PortRejected as exc:  # not a database, or a newer schema
        raise _Failure(str(exc)) from exc
    except PortError as exc:  # busy or unreachable: the same command may work later
        raise _Failure(str(exc), PROBLEMS) from exc


def _open_postgresql(db: str) -> _Store:
    try:
        from retouraanvraag.adapters.postgres import PostgresStorage  # noqa: PLC0415 - extra
    except ImportError as exc:
        raise _Failure(f"--db: {exc} (install retouraanvraag[postgres])") from exc
    try:
        return PostgresStorage(db, migrate=False, max_size=2)
    except InvalidInput as exc:
        raise _Failure(f"--db: {exc}") from exc
    except PortRejected as exc:  # no schema yet, or a newer one
        raise _Failure(str(exc)) from exc
    except PortError as exc:  # unreachable: the same command may work later
        raise _Failure(str(exc), PROBLEMS) from exc


def _refused(exc: RetouraanvraagError) -> _Failure:
    """The one line and exit code for an error the library raised on a user's command."""
    if isinstance(exc, RuleError):
        return _Failure(_rule_problem(exc))
    if isinstance(exc, NotFound | TransitionNotAllowed | IdempotencyConflict | PortError):
        return _Failure(str(exc), PROBLEMS)
    return _Failure(str(exc), USAGE)


def _rule_problem(error: RuleError) -> str:
    """A lone condition's first problem, on one line: ``--rule: column 5: unknown field``."""
    if not error.diagnostics:
        return "--rule: the condition cannot be read"
    first = error.diagnostics[0]
    hint = f" ({first.hint})" if first.hint else ""
    more = len(error.diagnostics) - 1
    rest = f" (and {more} more)" if more else ""
    return f"--rule: column {first.column}: {first.message}{hint}{rest}"


@contextlib.contextmanager
def _desk(args: argparse.Namespace) -> Iterator[tuple[Desk, _Store]]:
    from retouraanvraag.workflow import Desk, Policy  # noqa: PLC0415

    storage = _open(args.db)
    try:
        try:
            desk = Desk(storage, policy=Policy(timezone=args.timezone))
        except InvalidInput as exc:
            raise _Failure(f"--timezone: {exc.problem}") from exc
        yield desk, storage
    except RetouraanvraagError as exc:
        raise _refused(exc) from exc
    finally:
        storage.close()


# -- requests --------------------------------------------------------------------------------


def _money(money: Money | None) -> dict[str, Any] | None:
    return None if money is None else {"amount": money.amount, "currency": money.currency}


def _moment(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _local(moment: dt.datetime | None, timezone: str) -> str:
    from retouraanvraag.shop import time_zone  # noqa: PLC0415

    if moment is None:
        return "-"
    return moment.astimezone(time_zone(timezone)).strftime("%Y-%m-%d %H:%M")


def _summary(request: ReturnRequest) -> dict[str, Any]:
    """What a listing shows of a request: ids, status, amounts; no personal data."""
    decided = request.decided_by
    return {
        "id": request.id,
        "order_number": request.order_number,
        "status": request.status.value,
        "from_country": request.from_country,
        "created_at": request.created_at.isoformat(),
        "items": sum(item.quantity for item in request.items),
        "return_value": _money(request.return_value),
        "needs_attention": request.needs_attention,
        "decided_by": None if decided is None else str(decided),
    }


def _requests(args: argparse.Namespace, out: TextIO, _err: TextIO) -> int:
    with _desk(args) as (desk, storage):
        if args.action == "list":
            return _list(desk, args, out)
        if args.action == "show":
            return _show(desk, storage, args, out)
        return _decide(desk, storage, args, out)


def _list(desk: Desk, args: argparse.Namespace, out: TextIO) -> int:
    tab, shop = args.tab, args.shop
    if args.rule is not None and tab in {"history", "attention"}:
        raise _Failure("--rule filters the requests and incoming tabs only")
    if (args.rejected or args.waiting) and tab != "requests":
        raise _Failure("--rejected and --waiting filter the requests tab only")
    page_options: dict[str, Any] = {"limit": args.limit, "cursor": args.cursor}
    if tab == "requests":
        rejected = True if args.rejected else False if args.waiting else None
        page = desk.requests_tab(shop, rejected=rejected, rule=args.rule, **page_options)
    elif tab == "incoming":
        page = desk.incoming_returns(shop, rule=args.rule, **page_options)
    elif tab == "history":
        page = desk.history_tab(shop, **page_options)
    else:
        page = desk.needing_attention(shop, **page_options)
    if args.json:
        listing = [_summary(r) for r in page.items]
        _json(out, {"tab": tab, "requests": listing, "next_cursor": page.next_cursor})
        return OK
    if not page.items:
        print(f"no requests in the {tab} tab", file=out)
        return OK
    rows = [
        [
            r.id,
            r.order_number,
            r.status.value,
            r.from_country,
            _local(r.created_at, args.timezone),
            str(sum(i.quantity for i in r.items)),
            r.return_value.format("nl"),
            "yes" if r.needs_attention else "",
        ]
        for r in page.items
    ]
    headers = ["id", "order", "status", "from", "created", "items", "value", "attention"]
    _table(out, headers, rows, title=f"{tab} tab, shop {shop}", right=frozenset({5, 6}))
    if page.next_cursor:
        print(f"more: add --cursor {page.next_cursor}", file=out)
    return OK


def _history(request: ReturnRequest) -> list[dict[str, Any]]:
    return [
        {
            "at": entry.at.isoformat(),
            "actor": str(entry.actor),
            "command": str(entry.command),
            "status_from": None if entry.status_from is None else entry.status_from.value,
            "status_to": entry.status_to.value,
            "note": entry.note,
            "trace": list(entry.trace),
            "effect": entry.effect,
        }
        for entry in request.history
    ]


def _outbox(entries: Sequence[OutboxEntry]) -> list[dict[str, Any]]:
    return [
        {
            "key": entry.key,
            "kind": entry.effect.kind.value,
            "state": entry.state.value,
            "attempts": entry.attempts,
            "available_at": _moment(entry.available_at),
            "last_error": entry.last_error,
        }
        for entry in entries
    ]


def _label(label: Label | None) -> dict[str, Any] | None:
    if label is None:
        return None
    return {"carrier": label.carrier, "tracking_number": label.tracking_number}


def _details(request: ReturnRequest) -> dict[str, Any]:
    """The whole request as ``show --json`` prints it: its JSON form and its lifecycle."""
    from retouraanvraag.jsonformat import request_to_json  # noqa: PLC0415

    return {
        **request_to_json(request),
        "status": request.status.value,
        "version": request.version,
        "reject_reason": request.reject_reason,
        "return_value": _money(request.return_value),
        "return_fee_asked": _money(request.return_fee_asked),
        "refunded": _money(request.refunded),
        "carrier": request.carrier,
        "label": _label(request.label),
        "needs_attention": request.needs_attention,
        "attention": list(request.attention),
    }


def _flat(text: str) -> str:
    """Free text (a name, a reason) on one line: its own line breaks would break the layout."""
    return " ".join(text.split())


def _show(desk: Desk, storage: Storage, args: argparse.Namespace, out: TextIO) -> int:
    request = desk.get(args.shop, args.id)
    entries = storage.outbox(args.shop, request.id)
    if args.json:
        _json(
            out,
            {
                "request": _details(request),
                "history": _history(request),
                "outbox": _outbox(entries),
            },
        )
        return OK
    zone = args.timezone
    fee = request.return_fee
    lines = [
        f"request {request.id} (shop {request.shop_id}, version {request.version})",
        f"  order       {request.order_number}",
        f"  status      {request.status.value}",
        (
            f"  customer    {_flat(request.customer.name)} <{request.customer.email}>"
            f" ({request.customer.language.value})"
        ),
        f"  from        {request.from_country}",
        f"  created     {_local(request.created_at, zone)}",
        f"  delivered   {_local(request.delivered_at, zone)}",
        (
            f"  value       {request.return_value.format('nl')} of an order of"
            f" {request.order_value.format('nl')}"
        ),
    ]
    lines += [
        f"  item {i + 1}      {item.quantity} x {_flat(item.name)} ({item.sku}),"
        f" {item.unit_price.format('nl')}, {item.reason}"
        + (f": {_flat(item.reason_text)}" if item.reason_text else "")
        for i, item in enumerate(request.items)
    ]
    if fee is not None:
        lines.append(
            f"  return fee  {fee.amount.format('nl')} paid ({fee.payment_reference}),"
            f" {request.refunded.format('nl')} refunded"
        )
    if request.reject_reason:
        lines.append(f"  rejected    {_flat(request.reject_reason)}")
    if request.label is not None:
        lines.append(f"  label       {request.label.carrier} {request.label.tracking_number}")
    lines += [f"  attention   {_flat(problem)}" for problem in request.attention]
    lines.append("history")
    for entry in request.history:
        moved = (
            f"{entry.status_from.value} -> {entry.status_to.value}"
            if entry.status_from is not None and entry.status_from != entry.status_to
            else entry.status_to.value
            if entry.status_from is None
            else ""
        )
        what = f"{entry.command!s:<22} {moved}"
        if entry.effect:
            what = f"{entry.command!s:<22} {entry.effect}"
        note = f"  {_flat(entry.note)}" if entry.note else ""
        lines.append(f"  {_local(entry.at, zone)}  {entry.actor!s:<16} {what}{note}".rstrip())
        lines += [f"      {_flat(line)}" for line in entry.trace]
    lines.append("outbox")
    if not entries:
        lines.append("  (nothing owed)")
    for effect in entries:
        failures = effect.attempts
        tried = f", {failures} failed {'try' if failures == 1 else 'tries'}" if failures else ""
        error = f"; last error: {effect.last_error}" if effect.last_error else ""
        lines.append(f"  {effect.key}  {effect.state.value}{tried}{error}")
    out.write("\n".join(lines) + "\n")
    return OK


def _decide(desk: Desk, storage: Storage, args: argparse.Namespace, out: TextIO) -> int:
    shop, key = args.shop, args.idempotency_key
    action = args.action
    if action == "approve":
        request = desk.approve(
            shop,
            args.id,
            with_label=not args.no_label,
            refund_return_fee=args.refund_fee,
            actor=args.actor,
            idempotency_key=key,
        )
    elif action == "reject":
        request = desk.reject(
            shop, args.id, reason=args.reason, actor=args.actor, idempotency_key=key
        )
    elif action == "cancel":
        request = desk.cancel(shop, args.id, actor=args.actor, idempotency_key=key)
    elif action == "receive":
        request = desk.mark_received(shop, args.id, actor=args.actor, idempotency_key=key)
    else:
        request = desk.complete(shop, args.id, actor=args.actor, idempotency_key=key)
    from retouraanvraag.ports import EffectState  # noqa: PLC0415

    pending = [e.key for e in storage.outbox(shop, request.id) if e.state is EffectState.PENDING]
    if args.json:
        _json(out, {"request": _summary(request), "pending_effects": pending})
        return OK
    print(f"{request.id}: {request.status.value}", file=out)
    if pending:
        print(
            f"  {len(pending)} effect(s) owed: {', '.join(pending)}"
            " (`retouraanvraag dispatch` carries them out)",
            file=out,
        )
    return OK


# -- triage ------------------------------------------------------------------------------------


def _outcome_line(
    number: int, ruleset: RuleSet, data: object, default: Decision, *, trace: bool, now: dt.datetime
) -> dict[str, Any]:
    """One request's outcome as triage writes it (``InvalidInput`` for a bad request)."""
    from retouraanvraag.jsonformat import request_from_json  # noqa: PLC0415

    request = request_from_json(data, reasons=ruleset.reasons, now=now)
    outcome = ruleset.evaluate(request, default=default)
    line: dict[str, Any] = {
        "line": number,
        "id": request.id,
        "decision": None if outcome.decision is None else outcome.decision.value,
        "rule": outcome.rule,
        "reason": outcome.reason,
        "refund_return_fee": outcome.refund_return_fee,
        "return_fee": _money(outcome.return_fee),
        "carrier": outcome.carrier,
        "refused": [{"item": r.index, "message": r.message} for r in outcome.refused],
    }
    if trace:
        line["trace"] = list(outcome.trace)
    return line


def _triage_record(
    number: int,
    raw: bytes,
    ruleset: RuleSet,
    default: Decision,
    *,
    trace: bool,
    now: dt.datetime,
) -> dict[str, Any]:
    """The line triage writes for line ``number``: its outcome, or what is wrong with it."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        return {"line": number, "error": f"not JSON: {exc.msg} (column {exc.colno})"}
    except (ValueError, RecursionError):
        return {"line": number, "error": "not JSON: not UTF-8 text, or nested too deeply"}
    try:
        return _outcome_line(number, ruleset, data, default, trace=trace, now=now)
    except InvalidInput as exc:
        known = data.get("id") if isinstance(data, dict) else None
        named = {"id": known} if isinstance(known, str) else {}
        return {"line": number, **named, "error": f"not a valid return request: {exc}"}


def _progress(err: TextIO) -> Any:  # noqa: ANN401 - rich is optional
    """A rich progress bar on a terminal ``err``, or a stand-in that shows nothing."""
    console = _console(err)
    if console is None:
        return contextlib.nullcontext(None)
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("triage"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def _triage(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from retouraanvraag.model import Decision  # noqa: PLC0415
    from retouraanvraag.rules import RuleSet  # noqa: PLC0415

    ruleset = _load(args, err)
    if isinstance(ruleset, int):
        return ruleset
    assert isinstance(ruleset, RuleSet)  # noqa: S101 - _load returns a RuleSet
    source: Path = args.requests
    try:
        lines = source.read_bytes().splitlines()
    except OSError as exc:
        raise _Failure(f"{source}: cannot read: {exc.strerror or exc}") from exc
    default = Decision(args.default)
    now = dt.datetime.now(dt.UTC)
    counts: Counter[tuple[str | None, str | None]] = Counter()
    failed = 0
    with contextlib.ExitStack() as stack:
        target = out
        if args.out is not None:
            try:
                target = stack.enter_context(args.out.open("w", encoding="utf-8", newline="\n"))
            except OSError as exc:
                raise _Failure(f"{args.out}: cannot write: {exc.strerror or exc}") from exc
        progress = stack.enter_context(_progress(err))
        task = None if progress is None else progress.add_task("triage", total=len(lines))
        for number, raw in enumerate(lines, start=1):
            if progress is not None:
                progress.advance(task)
            if not raw.strip():
                continue
            record = _triage_record(number, raw, ruleset, default, trace=args.trace, now=now)
            if "error" in record:
                failed += 1
                print(f"{source}:{number}: {record['error']}", file=err)
            else:
                counts[record["rule"], record["decision"]] += 1
            target.write(json.dumps(record, ensure_ascii=False) + "\n")
    _decisions_table(out if args.out is not None else err, ruleset, counts, failed)
    return PROBLEMS if failed else OK


def _decisions_table(
    stream: TextIO, ruleset: RuleSet, counts: Counter[tuple[str | None, str | None]], failed: int
) -> None:
    names = [rule.display_name(ruleset.language) for rule in ruleset.rules]
    order = {name: i for i, name in enumerate(names)}
    from retouraanvraag.model import Decision  # noqa: PLC0415

    ranks = {decision.value: i for i, decision in enumerate(Decision)}

    def place(key: tuple[str | None, str | None]) -> tuple[int, int]:
        rule, decision = key
        return (
            order.get(rule, len(order)) if rule else len(order) + 1,
            ranks.get(decision or "", -1),
        )

    rows = [
        [rule or "(no rule: the default)", decision or "(none)", str(n)]
        for (rule, decision), n in sorted(counts.items(), key=lambda kv: place(kv[0]))
    ]
    if failed:
        rows.append(["(not read)", "error", str(failed)])
    total = sum(counts.values()) + failed
    _table(
        stream,
        ["rule", "decision", "requests"],
        rows,
        title=f"decisions per rule ({total} requests)",
        right=frozenset({2}),
    )


# -- dispatch ----------------------------------------------------------------------------------

_TRY_OUT_LABEL: Final = b"%PDF-1.4\n% retouraanvraag try-out label: not valid for shipping\n%%EOF\n"


def _try_out_reference(prefix: str, key: str) -> str:
    return f"{prefix}{hashlib.sha256(key.encode()).hexdigest()[:12].upper()}"


class _TryOutLabels:
    """``--labels fake``: no carrier is asked; the label says FAKE and is no use on a parcel.

    The same key always gives the same tracking number, so a retry in another run agrees; a
    voided key is refused for the rest of the run, as a carrier would.
    """

    def __init__(self) -> None:
        self._voided: set[str] = set()

    def create_label(self, key: str, request: ReturnRequest) -> Label:
        from retouraanvraag.model import Label  # noqa: PLC0415

        if key in self._voided:
            raise PortRejected(f"{key}: this label key was voided")
        return Label(
            carrier=request.carrier or "FAKE",
            tracking_number=_try_out_reference("FAKE", key),
            document=_TRY_OUT_LABEL,
            filename="fake-retourlabel.pdf",
        )

    def void_label(self, key: str) -> None:
        self._voided.add(key)


class _TryOutPayments:
    """``--payments fake``: every refund is answered as done, and no money moves.

    The dispatcher asks for what the stored request says is due (never more than the fee paid,
    which the database enforces); the reference is ``FAKE…``, the same for the same key.
    """

    def refund(self, key: str, payment_reference: str, amount: Money) -> str:  # noqa: ARG002
        return _try_out_reference("FAKE-REFUND-", key)


class _Stopper:
    """SIGINT and SIGTERM ask the worker to stop after the entry in hand.

    The handler only sets a flag (no lock is touched inside a signal handler); the signal's
    wake-up byte on a socket pair ends the worker's idle wait at once. A second SIGINT
    aborts at once, entry or not (its lease brings it back).
    """

    def __init__(self) -> None:
        self.requested = False
        self._reader, self._writer = socket.socketpair()
        self._reader.settimeout(0)  # non-blocking: reads drain what is there
        self._writer.settimeout(0)  # and a full buffer never blocks the signal
        self._previous: dict[int, Any] = {}
        self._wakeup = -1

    def __enter__(self) -> Self:
        for number in (signal.SIGINT, signal.SIGTERM):
            self._previous[number] = signal.signal(number, self._handle)
        self._wakeup = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        return self

    def __exit__(self, *_exc: object) -> None:
        signal.set_wakeup_fd(self._wakeup)
        for number, handler in self._previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
        self._reader.close()
        self._writer.close()

    def _handle(self, number: int, _frame: FrameType | None) -> None:
        if self.requested and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def wait(self, seconds: float) -> None:
        """Wait ``seconds``, or less if a signal arrives."""
        if self.requested:
            return
        select.select([self._reader], [], [], seconds)
        with contextlib.suppress(BlockingIOError):
            while self._reader.recv(64):
                pass


def _work(dispatcher: Dispatcher, stopper: _Stopper, poll: float, batch: int) -> DispatchReport:
    """The worker: claim ``batch`` entries, run them, again; wait ``poll`` when none is due."""
    from retouraanvraag.dispatcher import DispatchReport  # noqa: PLC0415

    total = DispatchReport()
    while not stopper.requested:
        try:
            report = dispatcher.run_once(limit=batch)
        except Exception as exc:  # noqa: BLE001 - the worker outlives a failing round
            _log.warning("dispatch round failed; waiting", extra={"error": type(exc).__name__})
            report = DispatchReport()
        total.add(report)
        if report.handled == 0:
            stopper.wait(poll)
    return total


#: An environment variable's name as shells write them; only such a name is echoed in an
#: error (a secret given by mistake where its variable's name belongs stays off the screen).
_VARIABLE_NAME: Final = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")


def _webhook(args: argparse.Namespace) -> WebhookSink | None:
    """The event sink ``--webhook-url`` and ``--webhook-secret-env`` ask for, if they do."""
    from retouraanvraag.adapters.webhook import WebhookSink  # noqa: PLC0415

    url, variable = args.webhook_url, args.webhook_secret_env
    if url is None and variable is None:
        return None
    if url is None or variable is None:
        raise _Failure(
            "--webhook-url URL and --webhook-secret-env NAME go together: the events are "
            "posted to URL, signed with the secret in the environment variable NAME"
        )
    named = f"${variable}" if _VARIABLE_NAME.fullmatch(variable) else "the variable named"
    secret = os.environ.get(variable, "")
    if not secret:
        raise _Failure(
            f"--webhook-secret-env: {named} is not set or empty (give the name of the "
            "environment variable that holds the secret, never the secret itself)"
        )
    try:
        return WebhookSink(url, secret)
    except InvalidInput as exc:
        option = "--webhook-secret-env" if exc.field == "secret" else "--webhook-url"
        where = f" ({named})" if exc.field == "secret" else ""
        raise _Failure(f"{option}{where}: {exc.problem}") from exc


def _dispatch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from retouraanvraag.adapters.maildir import MaildirTransport  # noqa: PLC0415
    from retouraanvraag.dispatcher import Dispatcher  # noqa: PLC0415
    from retouraanvraag.mail import MailRenderer  # noqa: PLC0415

    if args.labels is None or args.payments is None:
        raise _Failure(
            "no carrier or payment adapter ships with retouraanvraag yet: pass --labels fake "
            "--payments fake to try things out (no real label is made and no money moves), "
            "or run a Dispatcher with your own adapters in your backend"
        )
    if args.maildir is None:
        raise _Failure("--maildir DIR is required: the Maildir the mails are delivered into")
    if not args.sender or not args.shop_name:
        raise _Failure("--sender ADDRESS and --shop-name NAME are required: the mails show them")
    try:
        renderer = MailRenderer(
            sender=args.sender, shop_name=args.shop_name, timezone=args.timezone
        )
    except InvalidInput as exc:
        field = exc.field.replace("_", "-") if exc.field else "mail"
        raise _Failure(f"--{field}: {exc.problem}") from exc
    sink = _webhook(args)
    storage = _open(args.db)
    print(
        "dispatch: --labels fake --payments fake: labels are marked FAKE and refunds move no "
        "money (for trying things out)",
        file=err,
    )
    if sink is not None:
        print(f"dispatch: events are posted, signed, to {sink.host}:{sink.port}", file=err)
    try:
        dispatcher = Dispatcher(
            storage,
            labels=_TryOutLabels(),
            payments=_TryOutPayments(),
            mail=MaildirTransport(args.maildir),
            renderer=renderer,
            events=sink,
        )
        if args.worker:
            with _Stopper() as stopper:
                print(
                    f"dispatch: worker {dispatcher.owner} started (pid {os.getpid()}); "
                    "SIGINT or SIGTERM stops it after the entry in hand",
                    file=err,
                    flush=True,
                )
                report = _work(dispatcher, stopper, args.poll, args.batch)
            print("dispatch: worker stopped", file=err)
        else:
            report = dispatcher.run_until_idle()
    except RetouraanvraagError as exc:
        raise _refused(exc) from exc
    finally:
        storage.close()
    print(
        f"{report.done} effect(s) done, {report.retried} to retry, {report.dead} failed for good",
        file=out,
    )
    return OK


# -- db migrate ----------------------------------------------------------------------------------


def _schema_version(path: Path) -> int | None:
    """The schema version a database file holds, ``None`` when there is no file."""
    if not path.exists():
        return None
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        ) as db:
            return int(db.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise _Failure(f"{path}: not a SQLite database ({exc})") from exc


def _migrate_postgresql(db: str, out: TextIO) -> int:
    """``db migrate`` of a PostgreSQL database: its schema, created or brought up to date."""
    try:
        from retouraanvraag.adapters import postgres  # noqa: PLC0415 - the optional extra
    except ImportError as exc:
        raise _Failure(f"--db: {exc}") from exc
    try:
        where = postgres.describe(db)  # what the messages name: never the password
        before, after = postgres.migrate(db)
    except InvalidInput as exc:
        raise _Failure(f"--db: {exc}") from exc
    except PortRejected as exc:  # a newer schema, or the database refused the change
        raise _Failure(str(exc)) from exc
    except PortError as exc:  # unreachable: the same command may work later
        raise _Failure(str(exc), PROBLEMS) from exc
    if not before:
        note = "created"
    elif before == after:
        note = "up to date"
    else:
        note = f"migrated from version {before}"
    print(f"{where}: schema version {after} ({note})", file=out)
    return OK


def _migrate(args: argparse.Namespace, out: TextIO, _err: TextIO) -> int:
    if _is_postgresql(args.db):
        return _migrate_postgresql(args.db, out)
    path = _sqlite_path(args.db)
    if path.is_dir():
        raise _Failure(f"{path}: is a directory, not a database file")
    before = _schema_version(path)
    _open(args.db, create=True).close()
    after = _schema_version(path)
    if not before:
        note = "created"
    elif before == after:
        note = "up to date"
    else:
        note = f"migrated from version {before}"
    print(f"{path}: schema version {after} ({note})", file=out)
    return OK


# -- rules -------------------------------------------------------------------------------------


def _read(path: Path, err: TextIO) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError as error:
        print(f"{path}: cannot read: {error}", file=err)
        return None


def _report(path: Path, error: RuleError, err: TextIO) -> None:
    """Every diagnostic, then ``FILE: 2 fouten, 1 waarschuwing`` in the file's language."""
    from retouraanvraag.rules._messages import summary  # noqa: PLC0415

    for diagnostic in error.diagnostics:
        print(diagnostic, file=err)
    language = error.diagnostics[0].language if error.diagnostics else "en"
    errors = sum(1 for d in error.diagnostics if d.severity == "error")
    warnings = len(error.diagnostics) - errors
    print(f"{path}: {summary(errors, warnings, language)}", file=err)


def _load(args: argparse.Namespace, err: TextIO) -> object:
    """The rule set in ``args.file``, or the exit code (USAGE: unreadable, PROBLEMS: wrong)."""
    from retouraanvraag import rules  # noqa: PLC0415 - keep `--help` fast

    path: Path = args.file
    data = _read(path, err)
    if data is None:
        return USAGE
    try:
        ruleset = rules.parse(
            data, source_name=str(path), timezone=args.timezone, currency=args.currency
        )
    except RuleError as error:
        _report(path, error, err)
        return PROBLEMS
    except InvalidInput as error:
        print(f"{path}: {error}", file=err)
        return USAGE
    for warning in ruleset.warnings:
        print(warning, file=err)
    return ruleset


def _explain_code(name: str, language: str, out: TextIO, err: TextIO) -> int:
    from retouraanvraag import rules  # noqa: PLC0415

    entry = rules.find_code(name)
    if entry is None:
        first, last = rules.CODES[0].code, rules.CODES[-1].code
        print(f"unknown code {name!r}: the codes are {first} to {last}", file=err)
        return USAGE
    out.write(rules.explain_code(entry, language))
    return OK


def _rules(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:  # noqa: PLR0911
    from retouraanvraag import rules  # noqa: PLC0415
    from retouraanvraag.rules._messages import count  # noqa: PLC0415

    if args.action == "explain-code":
        return _explain_code(args.code, args.lang, out, err)
    ruleset = _load(args, err)
    if isinstance(ruleset, int):
        return ruleset
    assert isinstance(ruleset, rules.RuleSet)  # noqa: S101 - _load returns a RuleSet
    if args.action == "check":
        language = ruleset.language
        counts = ", ".join(
            count(n, key, language)
            for n, key in ((len(ruleset), "rule"), (len(ruleset.warnings), "warning"), (0, "error"))
        )
        print(f"{args.file}: {counts}", file=out)
        return OK
    if args.action == "explain":
        return _explain(ruleset, args.request, args.lang, out, err)
    text = rules.format(ruleset, language=args.lang)
    if args.check:
        data = _read(args.file, err) or b""
        if data.decode("utf-8", errors="replace") != text:
            print(f"{args.file}: not in canonical form (run `retouraanvraag rules fmt`)", file=err)
            return PROBLEMS
        return OK
    out.write(text)
    return OK


def _request_file(path: Path, ruleset: RuleSet) -> ReturnRequest:
    """The one request in ``path``, in the JSON form of :mod:`retouraanvraag.jsonformat`."""
    from retouraanvraag.jsonformat import request_from_json  # noqa: PLC0415

    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise _Failure(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise _Failure(f"{path}:{exc.lineno}: not JSON: {exc.msg} (column {exc.colno})") from exc
    except (ValueError, RecursionError) as exc:
        raise _Failure(f"{path}: not JSON ({type(exc).__name__})") from exc
    try:
        return request_from_json(data, reasons=ruleset.reasons)
    except InvalidInput as exc:
        raise _Failure(f"{path}: not a valid return request: {exc}") from exc


def _explain(ruleset: RuleSet, path: Path, language: str | None, out: TextIO, err: TextIO) -> int:
    try:
        request = _request_file(path, ruleset)
    except _Failure as failure:
        print(failure, file=err)
        return failure.code
    out.write(ruleset.explain(request, language))
    return OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
