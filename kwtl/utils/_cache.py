"""One-line reports of damaged cache entries.

joblib.Memory recomputes a cache entry it cannot load (e.g. a file truncated by a killed
process or a full disk), which is the right thing, but logs the whole traceback. kwtl's
caches (pre-training, PLFT, selection scores) are only ever a shortcut, so a damaged entry
deserves one warning line, not a traceback dump.
"""

import logging

__all__ = ["quiet_damaged_cache_logs"]

_MARK = "Exception while loading results for"


class _OneLine(logging.Filter):
    def filter(self, record):
        message = record.getMessage()
        if _MARK in message:
            head = message.split(_MARK, 1)[1].split("\n", 1)[0].strip()
            lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
            reason = lines[-1] if lines else "unreadable"
            record.msg = "damaged cache entry for %s (%s); recomputing it"
            record.args = (head.split("(", 1)[0] or "a cached call", reason)
        return True


_FILTER = _OneLine()


def quiet_damaged_cache_logs():
    """Make joblib report a damaged cache entry in one line (idempotent).

    Examples
    --------
    >>> quiet_damaged_cache_logs()
    >>> quiet_damaged_cache_logs()  # installing twice adds nothing
    """
    logger = logging.getLogger("joblib")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
