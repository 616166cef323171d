"""The command reference (docs/cli.md), generated from ``hmctl``'s parser: never written twice.

``python -m hypermesh.cli.reference > docs/cli.md`` regenerates the page; a test checks that the
committed page equals :func:`render_cli_reference`. Commands, options, defaults and examples come
from :func:`hypermesh.cli.main.build_parser`; only the conventions that hold for every command
(``_INTRO``) are written here by hand.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from collections.abc import Iterator

from hypermesh.cli.common import duration
from hypermesh.cli.main import build_parser

__all__ = ["main", "render_cli_reference"]

REGENERATE = "python -m hypermesh.cli.reference > docs/cli.md"

_HEADER = (
    f"<!-- Generated from hmctl's argument parser by `{REGENERATE}`; edit "
    "controller/hypermesh/cli/main.py (or the introduction in cli/reference.py), not this file. -->"
)

_MARKDOWN = re.compile(r"[\\*_<>\[\]]")
"""Characters that Markdown would take as markup in running text."""

_USAGE_WIDTH = 100
"""Usage lines are wrapped at this width, whatever the terminal that regenerates the page."""

_INTRO = """\
# hmctl command reference

`hmctl` declares a HyperMesh network in YAML manifests and converges the world to them, with
kubectl's conventions. This page lists every command with its options and an example; the same
text, shorter, is one `hmctl COMMAND --help` away. The manifests themselves are described in
[manifests.md](manifests.md).

## Conventions

### Manifests: `-f`

`-f PATH` (or `--filename PATH`) names the manifests to read, and may be repeated; the files are
read in the order given. `PATH` is one of:

- a file, whatever its name;
- a folder: every `*.yaml` and `*.yml` file under it, subfolders included, in sorted order;
- `-`: standard input (`hmctl get all -o yaml | hmctl validate -f -`).

A file may hold many documents separated by `---`. Every problem in every file is reported at
once, as `FILE:LINE:COL: Kind/name: field.path: message`, and nothing is changed.

### State: `--state` and `HM_STATE`

Everything `hmctl` knows lives in one state directory: a SQLite database (`state.db`) with the
desired and last-applied specs, the inventory of what it created and the status of each resource;
one folder per node under `nodes/` with its key (mode 0600), log and runtime file; and
`logs/controller.log` (JSON lines). The directory is `--state DIR` if given, else `$HM_STATE`,
else `.hypermesh` in the current directory. `--state` is a global option, so it goes before the
command: `hmctl --state /tmp/demo get nodes`.

One command at a time may change a state directory (`apply`, `up`, `controller run`, `delete`,
`down`); another one exits with status 3 at once instead of waiting, and says who holds the lock.
The exception is `down`, which stops a running `up` or `controller run` and then takes over.
`diff`, `get` and `describe` only read, and never wait for a writer.

### Output

- `get -o table` (the default) and `-o wide` print aligned columns, as kubectl does; `-o name`
  prints `kind/name` lines; `-o yaml` and `-o json` print Kubernetes-style objects,
  `{"apiVersion": "v1", "kind": "List", "items": [...]}`, each with `apiVersion`, `kind`,
  `metadata`, `spec` and `status`. A Node's status carries at least `address` (the real
  `host:port` of its QUIC endpoint), `identity` (its node ID), `pid` and `conditions` (`type`,
  `status`, `reason`, `message`, `observedGeneration`, `lastTransitionTime`). Scripts may rely on
  this shape. The YAML output applies back as it is: `-f` reads a `kind: List` as its items,
  and ignores `status`.
- `diff` and `plan` print a unified diff of each object that would change, as `kubectl diff`
  does, and a one-line summary; `-o json` prints the plan as data: `changes`, `summary`, `prune`,
  `items` (each with `action`, `resource`, `diff` and `drift`) and `orphans`.
- In `get`, `describe` and `diff` output, the values of fields whose names look secret
  (`secret`, `password`, `token`, `private_key`, `passphrase`) are masked.
- Durations (`--timeout`, `--interval`) are written `90`, `90s`, `1m30s`, `500ms` or `2h`.
- The commands that change the state log to `logs/controller.log` (JSON lines); on the
  terminal they show warnings and errors only, or everything with `-v` (a global option).

### Exit codes

| code | meaning |
|---|---|
| 0 | success; for `diff` and `plan`, no changes |
| 1 | `validate`: invalid; `diff`/`plan`: there are changes; `apply`: not converged in time |
| 2 | bad input (invalid manifests given to any other command), a usage or state error, not Linux |
| 3 | the state directory is locked by another `hmctl` (its command and pid are named) |
| 130 | interrupted (Ctrl-C); `up` and `controller run` stop cleanly on Ctrl-C and exit 0 |

`hmctl` runs on Linux only: it holds the state with flock, tells live nodes from dead ones
through /proc and isolates networks in network namespaces. On any other system it says so in
one line and exits 2 before doing anything.

When `apply` has not converged within `--timeout` it prints a table of the resources that are not
ready, with the reason and message of each; the nodes it did start keep running.

### Colour

Output is coloured only when it goes to a terminal, and never when the `NO_COLOR` environment
variable is set (to anything) or `TERM` is `dumb`; piped and redirected output is plain text.
"""


def render_cli_reference(parser: argparse.ArgumentParser | None = None) -> str:
    """The whole command reference as Markdown (``parser`` defaults to ``hmctl``'s own)."""
    parser = parser or build_parser()
    commands = list(_subcommands(parser))
    parts = [_HEADER, _INTRO, _global_section(parser, commands)]
    first_of: dict[object, str] = {}
    for name, sub in commands:
        handler = sub.get_default("handler")
        same_as = first_of.setdefault(handler, name) if handler is not None else name
        parts.append(_command_section(parser.prog, name, sub, same_as))
    return "\n".join(part.strip("\n") + "\n" for part in parts)


def _subcommands(
    parser: argparse.ArgumentParser, prefix: str = ""
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command, each followed by its own subcommands (``registry``, ``registry list``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + name, sub
                yield from _subcommands(sub, f"{prefix}{name} ")


def _global_section(
    parser: argparse.ArgumentParser, commands: list[tuple[str, argparse.ArgumentParser]]
) -> str:
    lines = [
        "## Global options",
        "",
        _sentence(parser.description),
        "",
        "Global options go before the command.",
        "",
        _code("text", _usage(parser)),
        "",
        *_options(parser),
        "",
        "## Commands",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    for name, sub in commands:
        anchor = f"{parser.prog}-{name}".replace(" ", "-")
        lines.append(f"| [`{name}`](#{anchor}) | {_cell(_sentence(sub.description))} |")
    example = _example(parser.epilog)
    if example:
        lines += ["", "Examples:", "", _code("sh", example)]
    return "\n".join(lines)


def _command_section(prog: str, name: str, parser: argparse.ArgumentParser, same_as: str) -> str:
    lines = [f"## {prog} {name}", "", _sentence(parser.description)]
    if same_as != name:
        lines += ["", f"`{prog} {name}` is another name for `{prog} {same_as}`."]
    lines += ["", _code("text", _usage(parser))]
    options = _options(parser)
    if options:
        lines += ["", *options]
    example = _example(parser.epilog)
    if example:
        lines += ["", "Example:", "", _code("sh", example)]
    return "\n".join(lines)


def _usage(parser: argparse.ArgumentParser) -> str:
    """The usage line as ``--help`` prints it, wrapped at a fixed width."""
    formatter = argparse.HelpFormatter(parser.prog, width=_USAGE_WIDTH)
    formatter.add_usage(
        parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="usage: "
    )
    return formatter.format_help().strip("\n")


def _options(parser: argparse.ArgumentParser) -> list[str]:
    """A Markdown table of every argument but ``--help`` and the subcommands."""
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        rows.append(
            f"| {_name(action)} | {_argument(action)} | {_default(action)} "
            f"| {_cell(_description(action))} |"
        )
    if not rows:
        return []
    return ["| option | argument | default | description |", "|---|---|---|---|", *rows]


def _name(action: argparse.Action) -> str:
    if action.option_strings:
        return ", ".join(f"`{option}`" for option in action.option_strings)
    return f"`{_metavar(action)}`"


def _metavar(action: argparse.Action) -> str:
    if isinstance(action.metavar, str):
        return action.metavar
    return action.dest if not action.option_strings else action.dest.upper()


def _argument(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.choices is not None:
        return "`{" + ",".join(str(choice) for choice in action.choices) + "}`"
    if not action.option_strings:
        return ""
    return f"`{_metavar(action)}`"


def _default(action: argparse.Action) -> str:
    default = action.default
    if action.nargs == 0 or default is None or default is argparse.SUPPRESS:
        return ""
    if action.type is duration and isinstance(default, (int, float)):
        return f"`{default:g}s`"
    return f"`{default}`"


def _description(action: argparse.Action) -> str:
    text = _sentence(action.help if action.help is not argparse.SUPPRESS else "")
    notes = []
    if action.required and action.option_strings:
        notes.append("Required.")
    if isinstance(action, argparse._AppendAction) and "repeatable" not in text:
        notes.append("Repeatable.")
    if action.nargs == "?":
        notes.append("Optional.")
    elif action.nargs == "*":
        notes.append("Zero or more.")
    return " ".join(part for part in (text, *notes) if part)


def _example(epilog: str | None) -> str:
    """The commands of an ``example:`` epilog, without its heading line."""
    if not epilog:
        return ""
    lines = epilog.strip("\n").splitlines()
    if lines and lines[0].strip().lower().rstrip(":") in ("example", "examples"):
        lines = lines[1:]
    return textwrap.dedent("\n".join(lines)).strip("\n")


def _sentence(text: str | None) -> str:
    """``"check manifests"`` → ``"Check manifests."``."""
    text = (text or "").strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _cell(text: str) -> str:
    """``text`` (help from the parser) made safe for a Markdown table cell: ``*.yaml`` stays
    ``*.yaml`` rather than starting emphasis; code spans in backticks are kept as they are."""
    parts = text.replace("\n", " ").split("`")
    for i in range(0, len(parts), 2):
        parts[i] = _MARKDOWN.sub(r"\\\g<0>", parts[i])
    return "`".join(parts).replace("|", "\\|")


def _code(language: str, text: str) -> str:
    return f"```{language}\n{text}\n```"


def main() -> int:
    sys.stdout.write(render_cli_reference())
    return 0


if __name__ == "__main__":
    sys.exit(main())
