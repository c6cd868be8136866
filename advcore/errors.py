"""Errors whose message is meant for a person, not a developer."""


class AdvlabError(ValueError):
    """Bad input from a person (a file, a flag, a slider value).

    The message is one plain sentence that can be shown as it is: the app puts
    it in ``st.error`` and the command line prints it on stderr with exit code 2.
    """


class Cancelled(RuntimeError):
    """Raised when a person stops a long computation before it ends."""
