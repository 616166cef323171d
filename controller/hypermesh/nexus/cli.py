"""The ``nexus`` command: compile, check, fmt, lock, lsp and run.

Exit codes: 0 success; 1 the program has problems (``compile``/``check``) or would be
reformatted (``fmt --check``); 2 a usage error, or ``run`` (not built yet).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from hypermesh import API_VERSION, __version__
from hypermesh.nexus.compiler import compile_file, to_yaml
from hypermesh.nexus.errors import NexusError, Problem
from hypermesh.nexus.formatter import format_source

__all__ = ["main"]

_EXAMPLES = {
    "compile": "example:\n  nexus compile examples/nexus-quickstart/network.nx -o network.yaml\n"
    "  nexus compile network.nx | hmctl apply -f -",
    "check": "example:\n  nexus check examples/nexus-quickstart/network.nx",
    "fmt": "examples:\n  nexus fmt network.nx          # rewrite in place\n"
    "  nexus fmt --check *.nx        # exit 1 if any file would change\n"
    "  nexus fmt - < network.nx      # standard input to standard output",
    "lock": "example:\n  nexus lock network.nx         # writes nexus.lock beside network.nx",
    "lsp": "example (Neovim):\n  vim.lsp.start({name = 'nexus', cmd = {'nexus', 'lsp'}})",
    "run": "example:\n  nexus run app.nx --state .hypermesh --for 10m",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nexus",
        description="Nexus: declare HyperMesh networks and their handlers in a small language, "
        "compiled to the manifests hmctl applies. See docs/nexus.md.",
        epilog="example:\n  nexus compile network.nx -o net.yaml && hmctl apply -f net.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"nexus {__version__} (HyperMesh API {API_VERSION})"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=_EXAMPLES[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    compile_ = add("compile", "compile a program to manifests (YAML), checked like hmctl validate")
    compile_.add_argument("file", metavar="FILE", help="the .nx program")
    compile_.add_argument("-o", "--output", metavar="OUT", help="write here (default stdout)")
    compile_.add_argument(
        "--no-validate",
        action="store_true",
        help="skip the manifest validator (compile errors are still reported)",
    )
    check = add("check", "report every problem as FILE:LINE:COL: message; exit 1 if any")
    check.add_argument("files", metavar="FILE", nargs="+")
    fmt = add("fmt", "rewrite programs in the canonical layout")
    fmt.add_argument("files", metavar="FILE", nargs="+", help="files, or - for stdin")
    fmt.add_argument("--check", action="store_true", help="change nothing; exit 1 if needed")
    lock = add("lock", "pin every git import's content hash in nexus.lock")
    lock.add_argument("file", metavar="FILE")
    add("lsp", "run the language server on stdin/stdout (for editors)")
    run = add("run", "run a program's handlers against a running network (through the SDK)")
    run.add_argument("file", metavar="FILE", help="the .nx program")
    run.add_argument(
        "--state", default=".hypermesh", help="hmctl's state directory (default ./.hypermesh)"
    )
    run.add_argument(
        "--for",
        dest="duration",
        metavar="DURATION",
        help="stop after this long (30s, 5m); default: until Ctrl-C",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command: str = args.command
    if command == "compile":
        return _compile(args.file, args.output, validate=not args.no_validate)
    if command == "check":
        return _check(args.files)
    if command == "fmt":
        return _fmt(args.files, check=args.check)
    if command == "lock":
        return _lock(args.file)
    if command == "lsp":
        from hypermesh.nexus.lsp import serve

        serve()
        return 0
    return _run(args.file, args.state, args.duration)


def _run(file: str, state: str, duration: str | None) -> int:
    from hypermesh.nexus.runtime import run_program
    from hypermesh.policy import parse_duration

    compiled = compile_file(file, validate=False)
    if compiled.problems:
        _report(compiled.problems)
        return 1
    try:
        seconds = parse_duration(duration) if duration else None
    except ValueError as exc:
        print(f"nexus run: --for: {exc}", file=sys.stderr)
        return 2
    return run_program(compiled, Path(state), seconds)


def _report(problems: Sequence[Problem]) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)


def _compile(file: str, output: str | None, *, validate: bool) -> int:
    compiled = compile_file(file, validate=validate)
    if compiled.problems:
        _report(compiled.problems)
        return 1
    text = to_yaml(
        compiled.documents,
        header=f"# Generated by `nexus compile {file}`; edit the .nx program, not this file.\n",
    )
    if output is None:
        sys.stdout.write(text)
    else:
        Path(output).write_text(text, encoding="utf-8")
    return 0


def _check(files: Sequence[str]) -> int:
    """Every problem of every file; a file without any is said to be fine, with what it
    declares (on stdout: the problems go to stderr)."""
    bad = 0
    for file in files:
        compiled = compile_file(file)
        _report(compiled.problems)
        bad += bool(compiled.problems)
        if not compiled.problems:
            kinds = Counter(str(d.get("kind")) for d in compiled.manifests)
            declared = ", ".join(f"{n} {kind}" for kind, n in kinds.items()) or "no resources"
            handlers = len(compiled.handlers)
            more = f", {handlers} handler{'s' if handlers != 1 else ''}" if handlers else ""
            print(f"{file}: ok ({declared}{more})")
    return 1 if bad else 0


def _fmt(files: Sequence[str], *, check: bool) -> int:
    status = 0
    for file in files:
        try:
            text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            print(f"{file}: cannot read: {exc.strerror}", file=sys.stderr)
            status = max(status, 2)
            continue
        try:
            formatted = format_source(text, "<stdin>" if file == "-" else file)
        except NexusError as exc:
            _report(exc.problems)
            status = max(status, 1)
            continue
        if file == "-":
            if check:
                status = max(status, int(formatted != text))
            else:
                sys.stdout.write(formatted)
        elif formatted != text:
            if check:
                print(f"{file}: would be reformatted", file=sys.stderr)
                status = max(status, 1)
            else:
                Path(file).write_text(formatted, encoding="utf-8")
                print(f"{file}: formatted", file=sys.stderr)
    return status


def _lock(file: str) -> int:
    from hypermesh.nexus.modules import ModuleResolver, write_lock

    resolver = ModuleResolver.beside(file, locking=True)
    compiled = compile_file(file, resolver=resolver, validate=False)
    if compiled.program is None:  # it does not parse: no imports to read
        _report(compiled.problems)
        return 1
    if resolver.failures:
        _report(resolver.failures)
        return 1
    write_lock(resolver.lock)
    print(
        f"{resolver.lock.path}: {len(resolver.lock.modules)} git module(s) pinned", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
