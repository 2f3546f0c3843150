"""What every command line of the project shares: the flag conventions (the default server address is
`facedeid.settings.DEFAULT_URL`).

* Flags are kebab-case (`--dataset-dir`); the original research code's snake_case spellings (`--dataset_dir`,
  `--batch_size`, `--output_dir`) are accepted as hidden aliases, so its commands keep working.
* Every flag has help text (`finish` refuses a parser with an undocumented flag; a test runs it over every CLI).
"""

from __future__ import annotations

import argparse

SNAKE_NOTE = "snake_case spellings of the flags (--batch_size for --batch-size) are accepted too"


def finish(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Register the snake_case alias of each kebab-case flag, and check that every flag is documented."""
    for action in parser._actions:
        if action.help is None or (not action.help.strip() and action.help != argparse.SUPPRESS):
            raise ValueError(f"{parser.prog}: {'/'.join(action.option_strings) or action.dest} has no help text")
        for option in list(action.option_strings):
            if option.startswith("--") and "_" in option:
                raise ValueError(f"{parser.prog}: declare {option} in kebab-case; the snake_case alias is automatic")
            alias = option.replace("-", "_").replace("__", "--", 1)
            if option.startswith("--") and alias != option and alias not in parser._option_string_actions:
                # Registered for parsing only: --help lists the kebab-case spelling once.
                parser._option_string_actions[alias] = action
    if parser.epilog is None:
        parser.epilog = SNAKE_NOTE
    return parser


def prog(default: str) -> str:
    """The program name to show: `facedeid <sub>` when run through the `facedeid` command, else `default`."""
    import os
    import sys

    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name.startswith("facedeid ") else default
