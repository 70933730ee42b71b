"""Errors a user can cause or meet, each mapped to a documented exit code.

Exit codes (docs/reliability.md): 0 success, 2 bad input or usage (also: stage not built yet; an input over a
resource limit, HANDCLI_MAX_*; an environment that refuses the write: full disk, read-only file system,
permissions, an output path that is a directory), 3 a stage failed on valid input, 130 interrupted.
"""

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_STAGE_FAILED = 3
EXIT_INTERRUPTED = 130


class HandcliError(Exception):
    """Base class: carries a one-line message and the exit code the CLI returns."""

    exit_code = EXIT_STAGE_FAILED

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadInput(HandcliError):
    """The user's input (file, option, value) is unusable; exit code 2."""

    exit_code = EXIT_BAD_INPUT


class NotBuilt(HandcliError):
    """A stage that does not exist yet; exit code 2, never fake output."""

    exit_code = EXIT_BAD_INPUT


class StageFailed(HandcliError):
    """A stage failed on valid input; exit code 3."""

    exit_code = EXIT_STAGE_FAILED


class InputWarning(UserWarning):
    """Something about the input is probably wrong but the command can go on (a missing tail of a video, a
    hand-centred or OpenGL-convention point cloud, an implausible hand size). Raised with `warn_input`; the CLI
    prints each as one `warning: ...` line on stderr and the exit code stays 0."""


def warn_input(message: str) -> None:
    """Report an InputWarning (the CLI shows it as `warning: MESSAGE`)."""
    import warnings

    warnings.warn(InputWarning(message), stacklevel=2)
