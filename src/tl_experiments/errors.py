"""The one exception type for mistakes a user can fix (config, data, weights)."""

__all__ = ["UserError"]


class UserError(Exception):
    """A problem the user caused and can fix; its message is one sentence naming the fix.

    Entry points print it without a traceback and exit non-zero
    (the traceback is shown with ``HYDRA_FULL_ERROR=1``).
    """
