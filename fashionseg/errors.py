"""The harness's errors: what a user asked for that cannot be done
(:class:`UsageError`) and input files that are not what they should be
(:class:`DataError`). Library code raises them and never exits; every tool
turns them into one ``error: MESSAGE`` line and exit status 2
(:func:`fashionseg.utils.cli.run_tool`), and the gpu-check records one as its
step's failure."""

# The exit status of a tool stopped by a usage or data error (argparse's
# own usage errors exit with 2 too).
ERROR_EXIT_STATUS = 2


class HarnessError(Exception):
    """Base of the errors a tool reports as one line, without a
    traceback."""


class UsageError(HarnessError, ValueError):
    """A mistake in what the user asked for: a path that is not there, an
    unknown option or setting, a device the machine does not have."""


class DataError(HarnessError, ValueError):
    """An input file (release, converted dataset, score file, checkpoint,
    photo) whose content is not what it should be."""


class TrainingDiverged(HarnessError):
    """A training run whose loss is no longer a finite number: its
    weights are lost from there on, and the run stops."""
