"""User mistakes: reported as one line by the jobs, never as a traceback."""


class UserError(Exception):
    """A problem with the job's inputs or options that the user can fix (message names it)."""


class JobFailed(Exception):
    """The job could not finish (a model actor kept dying, ...); what was staged is kept for --resume."""
