"""The one exception type for mistakes a user can fix (config, data, weights)."""

__all__ = ["UserError", "require_number", "require_seed"]


class UserError(Exception):
    """A problem the user caused and can fix; its message is one sentence naming the fix.

    Entry points print it without a traceback and exit non-zero
    (the traceback is shown with ``HYDRA_FULL_ERROR=1``).
    """


def require_number(key: str, value: object, integer: bool = False, positive: bool = False):
    """``value`` of config key ``key`` if it is a number (an int with ``integer``, above 0
    with ``positive``); otherwise a :class:`UserError` naming the key, the value and the fix."""
    kind = "a whole number" if integer else "a number"
    ok = isinstance(value, int if integer else int | float) and not isinstance(value, bool)
    if ok and positive and not value > 0:
        raise UserError(f"{key}={value} must be positive; set {key} to {kind} above 0.")
    if not ok:
        example = "10" if integer else "0.001"
        raise UserError(f"{key}={value} is not {kind}; set {key} to {kind} such as {example}.")
    return value


def require_seed(key: str, value: object) -> int:
    """``value`` of ``key`` if it is a seed numpy and torch accept (a whole number from 0 to
    2**32 - 1); otherwise a :class:`UserError` naming the key, the value and the fix."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise UserError(
            f"{key}={value} is not a seed; set {key} to a whole number from 0 to {2**32 - 1}."
        )
    return value
