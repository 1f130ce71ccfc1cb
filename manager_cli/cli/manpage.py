"""Man pages in roff for managerctl and every subcommand, generated from the click command tree.

The tree is walked with ``list_commands``/``get_command`` (not ``group.commands``, which is empty
for the lazily loaded top level), so a command registered in LAZY_COMMANDS gets its page on the
next run of scripts/gen-completions-and-man.py. Output is deterministic (no date, no terminal
width) so a test can compare it with the committed man/ directory.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass

import click

from .. import names
from ..errors import EXIT_CODES

PROG_NAME = names.PROG_NAME
SECTION = "1"

# Variables every page documents; options with envvar= are added per command.
ENVIRONMENT: tuple[tuple[str, str], ...] = (
    ("MANAGERCTL_TRANSPORT_URL", "The transport URL when --transport-url is not given."),
    ("MANAGERCTL_CONFIG_FILE", "A config file to read when --config-file is not given."),
    ("MANAGERCTL_CONFIG_DIR", "A config directory to read when --config-dir is not given."),
    (
        "MANAGERCTL_<OPTION>",
        "Any configuration option by its upper-case name, e.g. MANAGERCTL_HOST or "
        "MANAGERCTL_RPC_RESPONSE_TIMEOUT; it wins over config files, the command line wins "
        "over it. `managerctl config show` lists the options and where each value came from.",
    ),
    ("NO_COLOR", "When set (to anything), output has no colour, as with --no-color."),
    ("MANAGERCTL_STATE_DIR", "Where managerctl keeps local state (see FILES)."),
)

FILES: tuple[tuple[str, str], ...] = (
    (
        "*.conf",
        "oslo.config files, read only when given by --config-file, --config-dir or the "
        "environment; an existing nova.conf-style file works, unknown options are ignored.",
    ),
    (
        "$MANAGERCTL_STATE_DIR/hosts",
        "Known host names, one a line, offered by shell completion; without "
        "MANAGERCTL_STATE_DIR, $XDG_STATE_HOME/managerctl/hosts "
        "(~/.local/state/managerctl/hosts).",
    ),
)

# Arguments shared by many commands, for when a command's help does not say what they are.
COMMON_ARGUMENTS: dict[str, str] = {
    "NAME": "A manager: its entry-point name (see `managerctl managers list`) or module:Class.",
}

_SENTENCE_END = re.compile(r"(?<=\.)\s+(?=[A-Z])")
_HEADING = re.compile(r"^(examples?|exit codes):$", re.IGNORECASE)


@dataclass(frozen=True)
class Block:
    """A run of help text: a paragraph to fill, or lines kept as written (click's ``\\b``)."""

    lines: tuple[str, ...]
    verbatim: bool

    @property
    def heading(self) -> str:
        match = _HEADING.match(self.lines[0].strip()) if self.verbatim and self.lines else None
        return match.group(1).lower() if match else ""


def help_blocks(text: str | None) -> list[Block]:
    """Split click help text into blocks: blank lines separate them, ``\\b`` marks verbatim."""
    text = inspect.cleandoc(text or "").partition("\f")[0]
    blocks = []
    for chunk in re.split(r"\n\s*\n", text):
        lines = chunk.splitlines()
        if not lines or not chunk.strip():
            continue
        verbatim = lines[0].strip() == "\b"
        body = tuple(lines[1:] if verbatim else lines)
        if body:
            blocks.append(Block(body, verbatim))
    return blocks


def escape(text: str) -> str:
    """Text safe on a roff text line: backslashes, minus signs, quotes, a leading control char."""
    text = text.replace("\\", "\\e").replace("-", "\\-").replace("'", "\\(aq")
    text = text.replace("`", "\\(ga")
    return "\\&" + text if text.startswith((".", "'")) else text


def inline(text: str) -> str:
    """Escaped prose, with `code` spans set in bold."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: leave it as a character
        return escape(text)
    return "".join(
        f"\\fB{escape(part)}\\fR" if index % 2 else escape(part) for index, part in enumerate(parts)
    )


def page_name(ctx: click.Context) -> str:
    """``managerctl-managers-show`` for the context of ``managerctl managers show``."""
    return ctx.command_path.replace(" ", "-")


def _context(command: click.Command, name: str, parent: click.Context | None) -> click.Context:
    # As make_context does, minus parsing: subcommands inherit e.g. help_option_names.
    return click.Context(command, info_name=name, parent=parent, **command.context_settings)


def walk(ctx: click.Context) -> Iterator[click.Context]:
    """This context and a context for every visible subcommand below it, depth first."""
    yield ctx
    command = ctx.command
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from walk(_context(sub, name, ctx))


class _Page:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def section(self, title: str) -> None:
        self.add(f".SH {title}")

    def item(self, tag: str, text: str) -> None:
        self.add(".TP", tag, text)

    def blocks(self, blocks: list[Block]) -> None:
        for block in blocks:
            if block.verbatim:
                self.add(".PP", ".RS 4", ".nf", *(escape(line) for line in block.lines))
                self.add(".fi", ".RE")
            else:
                self.add(".PP", inline(" ".join(" ".join(block.lines).split())))


def _short_help(command: click.Command) -> str:
    return command.get_short_help_str(limit=200).rstrip(".")


def _synopsis(ctx: click.Context) -> str:
    words = [f"\\fB{escape(PROG_NAME)}\\fR"]
    if ctx.parent is not None:
        words.append("[\\fIGLOBAL OPTIONS\\fR]")
        path = ctx.command_path.split(" ")[1:]
        words.append(f"\\fB{escape(' '.join(path))}\\fR")
    for piece in ctx.command.collect_usage_pieces(ctx):
        words.append(f"\\fI{escape(piece)}\\fR")
    return " ".join(words)


def _option_tag(record: str) -> str:
    words = []
    for word in record.split(" "):
        bare = word.rstrip(",")
        if bare.startswith("-"):
            words.append(f"\\fB{escape(bare)}\\fR" + ("," if word.endswith(",") else ""))
        elif word == "/":
            words.append(word)
        else:
            words.append(f"\\fI{escape(word)}\\fR")
    return " ".join(words)


def _options(page: _Page, ctx: click.Context) -> None:
    records = []
    for param in ctx.command.get_params(ctx):
        record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
        if record is None:
            continue
        text = inline(" ".join(record[1].split()))
        envvar = param.envvar if isinstance(param.envvar, str) else None
        if envvar and not getattr(param, "show_envvar", False):
            text = f"{text} Environment: \\fB{escape(envvar)}\\fR.".strip()
        records.append((_option_tag(record[0]), text))
    if records:
        page.section("OPTIONS")
        for tag, text in records:
            page.item(tag, text)


def _argument_help(ctx: click.Context, argument: click.Argument, metavar: str) -> str:
    own = getattr(argument, "help", None)
    if own:
        return inline(own)
    # The command's help usually says what an argument is: "HOST is the server name ...".
    word = metavar.strip("[].")
    for block in help_blocks(ctx.command.help):
        text = " ".join(" ".join(block.lines).split())
        if not block.verbatim and text.startswith(f"{word} "):
            return inline(_SENTENCE_END.split(text, 1)[0])
    if word in COMMON_ARGUMENTS:
        return inline(COMMON_ARGUMENTS[word])
    kind = "Required." if argument.required else "Optional."
    return kind + (" May be given more than once." if argument.nargs == -1 else "")


def _arguments(page: _Page, ctx: click.Context) -> None:
    arguments = [p for p in ctx.command.get_params(ctx) if isinstance(p, click.Argument)]
    if arguments:
        page.section("ARGUMENTS")
        for argument in arguments:
            metavar = " ".join(argument.get_usage_pieces(ctx))
            page.item(f"\\fI{escape(metavar)}\\fR", _argument_help(ctx, argument, metavar))


def _commands(page: _Page, ctx: click.Context) -> list[str]:
    command = ctx.command
    if not isinstance(command, click.Group):
        return []
    names = []
    page.section("COMMANDS")
    for name in command.list_commands(ctx):
        sub = command.get_command(ctx, name)
        if sub is None or sub.hidden:
            continue
        names.append(f"{page_name(ctx)}-{name}")
        page.item(f"\\fB{escape(name)}\\fR", inline(_short_help(sub)) + ".")
        page.add(f"See \\fB{escape(names[-1])}\\fR({SECTION}).")
    return names


def _environment(page: _Page, ctx: click.Context) -> None:
    entries = list(ENVIRONMENT)
    for param in ctx.command.get_params(ctx):
        envvar = param.envvar if isinstance(param.envvar, str) else None
        if envvar and all(envvar != name for name, _ in entries):
            opt = max(param.opts, key=len)
            entries.append((envvar, f"The value of {opt} when it is not given."))
    page.section("ENVIRONMENT")
    for name, text in entries:
        page.item(f"\\fB{escape(name)}\\fR", inline(text))


def render_page(ctx: click.Context, version: str) -> str:
    """The roff source of the man page for the command of ``ctx``."""
    name = page_name(ctx)
    page = _Page()
    page.add(f'.TH "{escape(name.upper())}" "{SECTION}" "" "{PROG_NAME} {version}" "User Commands"')
    page.add(".nh", ".ad l")  # no hyphenation or justification: names and options stay whole
    page.section("NAME")
    page.add(f"{escape(name)} \\- {inline(_short_help(ctx.command))}")
    page.section("SYNOPSIS")
    page.add(_synopsis(ctx))

    blocks = help_blocks(ctx.command.help) + help_blocks(ctx.command.epilog)
    examples = [block for block in blocks if block.heading.startswith("example")]
    page.section("DESCRIPTION")
    page.blocks([block for block in blocks if not block.heading])
    if ctx.parent is not None:
        page.add(".PP", f"Global options go before the command; see \\fB{PROG_NAME}\\fR(1).")

    children = _commands(page, ctx)
    _options(page, ctx)
    _arguments(page, ctx)

    page.section("EXIT STATUS")
    for code, meaning in EXIT_CODES:
        page.item(f"\\fB{code}\\fR", inline(meaning[:1].upper() + meaning[1:] + "."))
    _environment(page, ctx)
    page.section("FILES")
    for path, text in FILES:
        page.item(f"\\fI{escape(path)}\\fR", inline(text))
    if examples:
        page.section("EXAMPLES")
        page.blocks([Block(tuple(_dedent(block.lines[1:])), True) for block in examples])

    see_also = [PROG_NAME] if ctx.parent is not None else []
    if ctx.parent is not None and ctx.parent.parent is not None:
        see_also.append(page_name(ctx.parent))
    see_also += children
    if see_also:
        page.section("SEE ALSO")
        page.add(",\n".join(f"\\fB{escape(ref)}\\fR({SECTION})" for ref in see_also))
    return "\n".join(page.lines) + "\n"


def _dedent(lines: tuple[str, ...]) -> list[str]:
    return inspect.cleandoc("\n".join(lines)).splitlines()


def render_pages(cli: click.Command, prog_name: str = PROG_NAME) -> dict[str, str]:
    """``{"managerctl.1": roff, "managerctl-call.1": roff, ...}`` for the whole command tree."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package_version = version("managerctl")
    except PackageNotFoundError:
        package_version = "unknown"
    root = _context(cli, prog_name, None)
    return {f"{page_name(ctx)}.{SECTION}": render_page(ctx, package_version) for ctx in walk(root)}
