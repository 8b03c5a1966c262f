"""The one exception users can cause; CLIs turn it into one line on stderr and exit code 2."""


class ClsweepError(Exception):
    """A usage error (bad config, unknown name, missing data). The message names the fix."""
