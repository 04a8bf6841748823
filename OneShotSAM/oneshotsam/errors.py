"""The one error type for every problem a user can cause and fix.

:class:`OneShotError` carries a message that says what is wrong AND what to do
("... : pass --window SPEC", "... : run `oneshotsam weights download NAME`").
Front ends show it as it is: the command line prints one line ``error: ...`` on
stderr and exits with status 2, without a traceback; the Slicer module shows it
in a message box. Any other exception is a bug in OneShotSAM and is reported as
such ("unexpected error ... please report it").

Standard library only at import time.
"""

from __future__ import annotations


class OneShotError(ValueError):
    """A user-facing error: bad input or an impossible request.

    The message says what is wrong and what to do. The CLI prints it and exits
    with status 2, without a traceback.
    """


__all__ = ["OneShotError"]
