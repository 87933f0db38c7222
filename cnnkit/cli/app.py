"""The Typer application object; command modules attach themselves to it."""

import errno
import sys

import typer

from cnnkit.cli.common import StdoutFailed, StdoutGuard, stdout_failure_exit


class CnnkitApp(typer.Typer):
    """The app as the `cnnkit` command runs it: every write to stdout is guarded.

    Help, --version and every command print through sys.stdout; a closed pipe, a full disk
    or a closed fd there ends the command like a standard tool (see stdout_failure_exit).
    In-process test runners call the Click command directly and bring their own stdout.
    """

    def __call__(self, *args, **kwargs):
        if sys.stdout is None:  # started with fd 1 closed (`cnnkit ... >&-`): Python left it None
            sys.exit(stdout_failure_exit(StdoutFailed(OSError(errno.EBADF, "Bad file descriptor"))))
        real = sys.stdout
        sys.stdout = StdoutGuard(real)
        try:
            try:
                return super().__call__(*args, **kwargs)
            finally:  # Click ends with SystemExit; what is still buffered must be written first
                sys.stdout.flush()
        except StdoutFailed as failure:
            sys.exit(stdout_failure_exit(failure))
        finally:
            sys.stdout = real


app = CnnkitApp(
    name="cnnkit",
    help="Image classification with convolutional networks: train, fine-tune, evaluate, predict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from cnnkit.version import __version__

        print(f"cnnkit {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Image classification with convolutional networks: train, fine-tune, evaluate, predict.

    Exit codes: 0 success, 1 a problem with data, files, checkpoints or the
    environment, 2 command-line usage, 130 interrupted. CNNKIT_DEBUG=1 shows tracebacks.
    """
