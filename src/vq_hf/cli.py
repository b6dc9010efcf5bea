"""The `vq-hf` command: one entry point, each sub-command implemented by the module that owns the work.

Every sub-command module exposes ``cli(argv: list[str]) -> int`` with its own argparse parser, so
``vq-hf <command> --help`` documents every flag where the code lives. A command whose optional packages are
missing prints one line naming the ``pip install "vq-hf[extra]"`` that brings them (exit code 1).
"""

from __future__ import annotations

import importlib
import sys

from ._extras import MissingExtraError, install_hint

# name -> (module, the extra its packages come from, help)
COMMANDS = {
    "eval": ("vq_hf.evaluation", "train", "evaluate a trained model folder on a dataset split; prints metrics JSON"),
    "units": ("vq_hf.units", "train", "extract discrete units (codes) of your files, a datasets column or a corpus split"),
    "unit-quality": (
        "vq_hf.unit_evaluation",
        "train",
        "purity, PNMI, boundary F1, mapped error rate, bitrate, ABX of a model's units on an aligned split",
    ),
    "reproduce": (
        "vq_hf.reproduce",
        "train",
        "run every row of the paper's Table I, II or III for several seeds; report.md, table.csv, figures",
    ),
    "make-handwriting-corpus": (
        "vq_hf.standins.handwriting",
        "standins",
        "write a ScribbleLens-format stand-in corpus zip of rendered handwriting lines",
    ),
    "make-speech-corpus": (
        "vq_hf.standins.speech",
        "standins",
        "write Kaldi data directories of Festival-spoken CMU ARCTIC prompts with phone CTMs",
    ),
}


def _usage() -> str:
    lines = ["usage: vq-hf <command> [options]", "", "commands:"]
    lines += [f"  {name:<26}{help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "Run `vq-hf <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"vq-hf: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, extra, _ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
        return int(module.cli(rest) or 0)
    except MissingExtraError as err:
        print(f"vq-hf {name}: {err}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as err:
        if (err.name or "vq_hf").split(".")[0] == "vq_hf":
            raise  # a broken install of this package, not a missing extra
        print(f"vq-hf {name}: the package {err.name.split('.')[0]!r} is not installed: {install_hint(extra)}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
