"""The exit codes of every ``ezmsg-console`` command (one table, in the README and ``--help``)."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    """Done."""
    REFUSED = 1
    """The server, a worker or the pipeline refused or failed: a bad value, a conflict, a wrong token, a run error."""
    UNREACHABLE = 2
    """No GraphServer answered at the address, or the connection was lost."""
    PARTIAL = 3
    """Done, but some process did not answer (the output lists it under ``errors``)."""
    USAGE = 64
    """The command cannot run as given: bad arguments or address, a ``--backend`` that is not the server's,
    an option or extra it needs, a port in use."""
    INTERRUPTED = 130
    """Stopped by Ctrl+C."""


EPILOG = ("Exit codes: 0 ok, 1 refused or failed, 2 server unreachable, 3 partial (some process did not "
          "answer), 64 usage or configuration error, 130 interrupted.")
