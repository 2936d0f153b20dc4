"""The exception that marks a user's input mistake in the decision layer."""


class DetectInputError(ValueError):
    """Invalid input the user can fix (a missing file, a format or dimension mismatch, NaN rows).

    The `latentwatch` command prints it as one line and exits with status 2, without a traceback.
    """
