"""Errors a user can cause or meet, each mapped to a documented exit code.

Exit codes (docs/reliability.md): 0 success, 2 bad input or usage (also: stage not built yet),
3 a stage failed on valid input, 130 interrupted.
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
