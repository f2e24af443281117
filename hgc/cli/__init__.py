"""The ``hgc`` command. Each subcommand is a module of this package exposing
``register(subparsers) -> None`` (adds its parser and sets ``func`` to a callable taking the parsed args
and returning an exit code). Arguments after a ``--`` are handed to the subcommand as ``args.script_args``
when it takes them (its parser defaults ``script_args``), else rejected."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hgc", description="Train and serve HugeCTR models with hgc.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not m.name.startswith("_"):
            importlib.import_module(f"{__name__}.{m.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = parser.parse_args(argv)
    if extra:
        if not hasattr(args, "script_args"):
            parser.error(f"arguments after '--' ({' '.join(extra)}) are not taken by this command")
        args.script_args = extra
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
