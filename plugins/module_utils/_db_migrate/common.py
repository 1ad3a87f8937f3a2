# -*- coding: utf-8 -*-
# Copyright: positops.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
"""What every part of db_migrate shares: the psycopg import guard, the error type and the masking of secrets."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

try:
    import psycopg
    from psycopg import sql
    from psycopg.adapt import PyFormat
    from psycopg.conninfo import conninfo_to_dict
    from psycopg.copy import LibpqWriter, Writer

    HAS_PSYCOPG = True
    PSYCOPG_IMPORT_ERROR = None
except ImportError as import_error:  # reported by the module with missing_required_lib()
    psycopg = sql = PyFormat = conninfo_to_dict = None
    # Base classes of the COPY writers (stream.py) so that their definitions still import.
    LibpqWriter = Writer = object
    HAS_PSYCOPG = False
    PSYCOPG_IMPORT_ERROR = import_error

# Re-exported for the other modules of the package, which import psycopg only through this guard.
__all__ = ["APPLICATION_NAME", "HAS_PSYCOPG", "LibpqWriter", "MASK", "MigrationError", "PSYCOPG_IMPORT_ERROR",
           "PyFormat", "Writer", "conninfo_to_dict", "mask", "psycopg", "sql", "uri_secrets"]

# Every connection db_migrate opens carries this application_name, so pg_stat_activity (and the message of a run
# that waits for the target's lock) shows which sessions are db_migrate's.
APPLICATION_NAME = "positops.ha.db_migrate"
MASK = "********"


class MigrationError(Exception):
    """A refusal or failure; the message names what is wrong and what to do."""


def uri_secrets(uri):
    """The strings that must never appear in output: the password (decoded and as written) and the URI."""
    secrets = []
    try:
        password = conninfo_to_dict(uri).get("password") if HAS_PSYCOPG else None
    except Exception:  # an unparsable URI still must not leak: the regex below covers it
        password = None
    if password:
        secrets.append(password)
    match = re.search(r"://[^:/@]*:([^@/]*)@", uri or "")
    if match and match.group(1):
        secrets.append(match.group(1))
    if secrets and uri:
        secrets.append(uri)
    return secrets


def mask(text, secrets):
    text = str(text)
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text
