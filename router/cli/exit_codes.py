"""The exit codes of every ``lienthong`` command: one table, so scripts can tell what
happened without reading the message. No imports: commands that must start fast
(``lienthong package inspect``) take their codes from here.

====  ==========================  ===========================================================
code  name                        meaning
====  ==========================  ===========================================================
0     OK                          done; a check passed
1     EXIT_ERROR                  anything else that went wrong (the message says what)
2     EXIT_USAGE                  a wrong option or argument (click's usage error, and only it)
3     (``lienthong router``)      its workers keep crashing (``WORKERS_CRASHING``)
65    EXIT_REJECTED               the input was read and refused: a package, a signature, a
                                  receipt, an audit chain or anchor, a filter, a period
66    EXIT_MISSING_FILE           a file named on the command line cannot be read
67    EXIT_NOT_FOUND              what was named does not exist: a document, an agency, a
                                  parked message, figures for a unit
69    EXIT_UNREACHABLE            RabbitMQ or PostgreSQL cannot be reached
77    EXIT_LOGIN_REFUSED          RabbitMQ or PostgreSQL refused the login
78    EXIT_DATABASE_MISSING       the ledger database does not exist (``db migrate --create``)
130                               interrupted (Ctrl-C)
====  ==========================  ===========================================================

65-78 follow sysexits.h (EX_DATAERR, EX_NOINPUT, EX_NOUSER, EX_UNAVAILABLE, EX_NOPERM,
EX_CONFIG).
"""

from __future__ import annotations

__all__ = [
    "EXIT_DATABASE_MISSING",
    "EXIT_ERROR",
    "EXIT_LOGIN_REFUSED",
    "EXIT_MISSING_FILE",
    "EXIT_NOT_FOUND",
    "EXIT_REJECTED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_REJECTED = 65  # EX_DATAERR
EXIT_MISSING_FILE = 66  # EX_NOINPUT
EXIT_NOT_FOUND = 67  # EX_NOUSER
EXIT_UNREACHABLE = 69  # EX_UNAVAILABLE
EXIT_LOGIN_REFUSED = 77  # EX_NOPERM
EXIT_DATABASE_MISSING = 78  # EX_CONFIG
