"""The base of every error unilab raises about something a user can fix (config, cache, checkpoint, run).

The command line prints such an error as ``error: <message>`` and exits 2 (``unilab.user_errors``);
each module defines its own subclass next to the code that raises it.
"""

from __future__ import annotations


class UnilabError(Exception):
    """Bad input a user can fix; the message says what to do."""
