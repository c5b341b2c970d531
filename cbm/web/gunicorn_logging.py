"""gunicorn's logger in the cbm format (``logger_class`` in ``deploy/gunicorn.conf.py``).

Why: gunicorn configures its own ``gunicorn.error`` and ``gunicorn.access`` handlers in the
master, before any worker builds the app. This class lets it do so, then gives those
handlers the cbm formatter and context filter (the access line's request id comes from the
response's ``X-Request-ID``) and configures the root logger the way ``cbm`` commands do;
the workers inherit all of it when they fork.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from cbm import logs
from cbm.config import read_setting


class GunicornLogger(Logger):
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        fmt = read_setting("CBM_LOG_FORMAT")
        logs.configure(fmt, read_setting("CBM_LOG_LEVEL"))
        for logger in (self.error_log, self.access_log):
            logs.apply_to(logger, fmt)
