"""The Typer application object; command modules attach themselves to it."""

import contextlib
import errno
import sys

import typer
from typer.core import TyperCommand, TyperGroup

from cnnkit.cli.common import StdoutFailed, StdoutGuard, fail, stdout_failure_exit

USAGE_EXIT = 2  # command-line usage, as every other usage error (README, "Exit codes")
# Typer carries its own copy of Click (typer._click): its exception classes are found from the public
# typer.BadParameter, so this holds whichever Click a Typer release parses with.
ClickUsageError = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "UsageError")


def _is(exc: Exception, name: str) -> bool:
    return any(cls.__name__ == name for cls in type(exc).__mro__)


@contextlib.contextmanager
def usage_errors_as_lines():
    """Click's own usage errors (an unknown option, a bad value, a missing argument) as cnnkit prints every
    error: one `error:` line and one `hint:` line, exit 2, instead of Typer's boxed panel."""
    try:
        yield
    except ClickUsageError as exc:
        if _is(exc, "NoArgsIsHelpError"):  # `cnnkit` alone: Click prints the help itself
            raise
        command = exc.ctx.command_path if exc.ctx is not None else "cnnkit"
        message = exc.message
        hint = f"see {command} --help"
        if _is(exc, "NoSuchOption") and exc.possibilities:
            hint = f"did you mean {' or '.join(exc.possibilities)}? {hint}"
        elif not _is(exc, "NoSuchOption"):
            message = exc.format_message()
        message = message.rstrip(".")
        raise fail(message[:1].lower() + message[1:], hint, USAGE_EXIT) from None


def _examples_epilog(command, formatter) -> None:
    """The epilog as written, a line each: examples are shell lines, never joined or rewrapped."""
    if command.epilog:
        formatter.write_paragraph()
        with formatter.indentation():
            for line in command.epilog.strip("\n").splitlines():
                formatter.write(f"{' ' * formatter.current_indent}{line}\n" if line.strip() else "\n")


class CnnkitCommand(TyperCommand):
    """A command whose usage errors are cnnkit's `error:`/`hint:` lines and whose epilog keeps its lines."""

    def make_context(self, *args, **kwargs):
        with usage_errors_as_lines():
            return super().make_context(*args, **kwargs)

    def format_epilog(self, ctx, formatter) -> None:
        _examples_epilog(self, formatter)


class CnnkitGroup(TyperGroup):
    """The `cnnkit` group: usage errors as lines (its own and its commands'), whole command summaries."""

    def make_context(self, *args, **kwargs):
        with usage_errors_as_lines():
            return super().make_context(*args, **kwargs)

    def resolve_command(self, ctx, args):
        with usage_errors_as_lines():  # `cnnkit trian`
            return super().resolve_command(ctx, args)

    def format_commands(self, ctx, formatter) -> None:
        # Click cuts each summary to what fits beside the name ("check their..."); here it wraps instead.
        rows = [(name, command.get_short_help_str(limit=1000)) for name in self.list_commands(ctx)
                if (command := self.get_command(ctx, name)) is not None and not command.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


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

    def command(self, *args, **kwargs):
        kwargs.setdefault("cls", CnnkitCommand)
        return super().command(*args, **kwargs)


app = CnnkitApp(
    name="cnnkit",
    help="Image classification with convolutional networks: train, fine-tune, evaluate, predict.",
    no_args_is_help=True,
    cls=CnnkitGroup,
    add_completion=True,
    pretty_exceptions_enable=False,
    # Plain Click help: at 80 columns rich's option table leaves the help text a 20-character column
    # and cuts words in it ("flip,crop,rotate,ji…"); Click's wraps it, and shows no type on flags.
    rich_markup_mode=None,
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
