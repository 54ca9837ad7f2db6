"""The one exception type for user mistakes: bad flags, bad files, unreachable data.

The CLI prints its message as a single line and exits non-zero; it never shows a traceback.
Write messages as: what is wrong, where, what to do.
"""


class UserError(Exception):
    """A mistake the user can fix (bad input, bad flag, missing data)."""

    exit_code = 2


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; nothing was exported."""

    exit_code = 3


class ClusterLost(UserError):
    """A multi-worker peer stopped answering; rerunning every worker resumes from the backup."""

    exit_code = 4


class ExportCheckFailed(UserError):
    """An export did not answer like the model it was made from; nothing was published."""

    exit_code = 5
