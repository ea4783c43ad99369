"""``spheres``: list, run and show experiments (thin: parse, validate, call the library).

    spheres list
    spheres describe EXPERIMENT
    spheres run EXPERIMENT [--preset P] [--out DIR] [--seed N] [--set key=value ...] [--force]
                [--reevaluate] [--shard K/N]
                [--coordinator HOST:PORT --num-processes N --process-id I | --distributed]
    spheres show DIR
    spheres report DIR... [--out FILE]

Errors in what the user asked for print one line (``spheres: error: ...``) and exit with code 2;
an interrupted run exits 130 and resumes when the same command is run again. Rerunning a
finished run prints its table without recomputing it (``--reevaluate`` recomputes the summary from
the final checkpoint). In a run over several processes (`spheres.distributed`; docs/multi-process.md)
process 0 writes the run directory and prints the table; a process whose peer died exits with 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints usage too; keep it short)
        self.exit(2, f"spheres: error: {message}\n")


def _presets_epilog() -> str:
    """``--preset`` choices per experiment, for ``spheres run --help``."""
    from . import experiments

    lines = ["presets by experiment (cost in `spheres list`, config keys in `spheres describe EXP`):"]
    for name in experiments.names():
        lines.append(f"  {name:<34} {' | '.join(experiments.get(name).config_cls.PRESETS)}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="spheres", description="The geometry of adversarial examples: experiments.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="list experiments, presets and rough cost")
    d = sub.add_parser("describe", help="an experiment's config keys: type and value in every preset")
    d.add_argument("experiment")
    r = sub.add_parser("run", help="run an experiment (resumes if DIR holds the same run)",
                       epilog=_presets_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("experiment", help="experiment name (`spheres list`)")
    r.add_argument("--preset", default="quick", metavar="P",
                   help="scale of the run (default quick; the choices of each experiment are below)")
    r.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="run directory (default runs/EXP-PRESET-sSEED); rerunning resumes it")
    r.add_argument("--seed", type=int, default=None, metavar="N",
                   help="root seed of every random stream of the run (default: the preset's, 0)")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key (repeatable); `spheres describe EXP` lists the keys, "
                        "their types and their values in each preset")
    r.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                   help="image experiments: read the full data set's IDX files from DIR (same as --set "
                        "data_dir=DIR; quick presets otherwise use the shipped Fashion-MNIST sample, "
                        "other presets $SPHERES_DATA, then Debian's dataset-fashion-mnist, then tfds)")
    r.add_argument("--force", action="store_true",
                   help="replace a different run in --out (deletes only the files that run wrote)")
    r.add_argument("--reevaluate", action="store_true",
                   help="recompute a finished run's summary from its final checkpoint")
    r.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    r.add_argument("--shard", default=None, metavar="K/N",
                   help="sweeps (sphere-dimension-sweep, sphere-error-vs-distance, sphere-quadratic-"
                        "finite): run only members K, K+N, K+2N, ... into --out (one job of a job "
                        "array); the same command without --shard then merges the finished members")
    m = r.add_argument_group("several processes (one per host; docs/multi-process.md)")
    m.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="address of process 0, which every process connects to")
    m.add_argument("--num-processes", type=int, default=None, metavar="N", help="processes in the run")
    m.add_argument("--process-id", type=int, default=None, metavar="I",
                   help="this process's id, 0..N-1 (process 0 writes the run directory)")
    m.add_argument("--distributed", action="store_true",
                   help="take coordinator, count and id from the cluster (SLURM, Open MPI, Cloud TPU, "
                        "Kubernetes: jax.distributed.initialize() without arguments); implied by "
                        "SLURM_NTASKS > 1")
    m.add_argument("--init-timeout", type=int, default=300, metavar="S",
                   help="seconds to wait for the coordinator and every process (default 300)")
    s = sub.add_parser("show", help="print a run directory's config and result table")
    s.add_argument("run_dir", type=Path)
    rp = sub.add_parser("report", help="paper-vs-ours Markdown report from run directories")
    rp.add_argument("run_dirs", type=Path, nargs="+")
    rp.add_argument("--out", type=Path, default=None, help="write the report here (default: stdout)")
    rp.add_argument("--paper", choices=("gilmer", "szegedy", "goodfellow"), default=None,
                    help="write the results page of one paper from a directory of archived runs")
    return p


def _type_name(typ) -> str:
    import typing

    if typing.get_origin(typ) is typing.Literal:
        return " | ".join(map(str, typing.get_args(typ)))
    return getattr(typ, "__name__", str(typ)).replace("typing.", "")


def _cmd_describe(args) -> int:
    import typing

    from . import experiments

    exp = experiments.get(args.experiment)
    cls = exp.config_cls
    hints = typing.get_type_hints(cls)
    presets = {name: cls.preset(name) for name in cls.PRESETS}
    print(f"{exp.name}: {exp.description}\n")
    for name in presets:
        print(f"  --preset {name:<8} {cls.COST.get(name, '')}")
    rows = [("key", "type", *presets)]
    for f in dataclasses.fields(cls):
        rows.append((f.name, _type_name(hints.get(f.name, f.type)),
                     *(json.dumps(getattr(c, f.name)) for c in presets.values())))
    widths = [min(max(len(r[i]) for r in rows), 40) for i in range(len(rows[0]))]
    print()
    for row in rows:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print(f"\nset a key with --set KEY=VALUE, e.g. spheres run {exp.name} --set "
          f"{dataclasses.fields(cls)[0].name}=...")
    return 0


def _cmd_list() -> int:
    from . import experiments

    for name in experiments.names():
        exp = experiments.get(name)
        print(f"{name}\n    {exp.description}")
        for preset in exp.config_cls.PRESETS:
            cost = exp.config_cls.COST.get(preset, "")
            print(f"    --preset {preset:<8} {cost}")
    return 0


COMPILE_CACHE_ENV = "SPHERES_COMPILE_CACHE"


def compile_cache_dir() -> Path | None:
    """Where ``spheres run`` keeps JAX's persistent compilation cache, or None for no cache.

    ``$SPHERES_COMPILE_CACHE`` (``off`` disables it), else ``$XDG_CACHE_HOME/spheres/jax-compile``
    (``~/.cache/...``). None too when ``$JAX_COMPILATION_CACHE_DIR`` is set: JAX already uses it.
    A cache hit is the same executable (keys include the program, jax/jaxlib versions, flags and
    device), so results do not depend on it; only compile time does (szegedy-table1 quick: 126 s
    cold, 32 s warm on one core).
    """
    import os

    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    chosen = os.environ.get(COMPILE_CACHE_ENV, "")
    if chosen.lower() in ("off", "0", "none", "false"):
        return None
    if chosen:
        return Path(chosen).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "spheres" / "jax-compile"


def _enable_compile_cache() -> None:
    path = compile_cache_dir()
    if path is None:
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:     # a cache is an optimisation: run without it, and say so
        print(f"spheres: compilation cache disabled ({path}: {e.strerror}); set "
              f"{COMPILE_CACHE_ENV}=DIR or {COMPILE_CACHE_ENV}=off", file=sys.stderr)
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` as ``(K, N)`` with ``0 <= K < N``; None for None."""
    import re

    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or int(m[2]) < 1 or int(m[1]) >= int(m[2]):
        raise ValueError(f"--shard {text!r}: expected K/N with 0 <= K < N, e.g. --shard 0/4 ... "
                         f"--shard 3/4 for four jobs")
    return int(m[1]), int(m[2])


def _cmd_run(args) -> int:
    from . import distributed
    from .config import ConfigError

    launch = distributed.parse_launch(args.coordinator, args.num_processes, args.process_id,
                                      auto=args.distributed, timeout=args.init_timeout)
    shard = parse_shard(args.shard)
    if shard and args.force:
        raise ConfigError("--force does not go with --shard (a shard never deletes the other "
                          "shards' members); clear the run without --shard first")
    distributed.initialize(launch)
    from . import experiments

    writer = distributed.is_writer()
    exp = experiments.get(args.experiment)
    experiments.check_launch(args.experiment, shard)
    preset = exp.config_cls.canonical_preset(args.preset)
    overrides = list(args.overrides)
    if args.data_dir is not None:
        if "data_dir" not in {f.name for f in dataclasses.fields(exp.config_cls)}:
            raise ConfigError(f"{args.experiment} reads no image data; --data-dir applies to the "
                              f"szegedy-* and goodfellow-* experiments")
        overrides.append(f"data_dir={args.data_dir}")
        # the quick presets read the shipped sample; a data directory means the full data set
        if (exp.config_cls.preset(preset).dataset == "fashion_mnist_sample"
                and not any(o.startswith("dataset=") for o in overrides)):
            overrides.append("dataset=fashion_mnist")
    seed = args.seed if args.seed is not None else experiments.make_config(args.experiment, preset, overrides).seed
    out = args.out or Path("runs") / f"{args.experiment}-{preset}-s{seed}"
    who = "" if launch is None else f" (process {distributed.jax_process()} of {distributed.process_count()})"
    print(f"spheres: {args.experiment} --preset {preset} -> {out}{who}", file=sys.stderr)
    _enable_compile_cache()
    with distributed.native_stdout_to_stderr(launch is not None):
        summary = experiments.run_experiment(args.experiment, out, preset=preset, overrides=overrides,
                                             seed=args.seed, force=args.force,
                                             progress=not args.no_progress and writer,
                                             reevaluate=args.reevaluate, shard=shard)
    if shard and summary.get("merged"):
        print(f"spheres: {out} is already merged; the same command without --shard shows it",
              file=sys.stderr)
    elif shard:
        print(f"spheres: shard {shard[0]}/{shard[1]} of {args.experiment}: members "
              f"{', '.join(summary['members']) or '(none)'} finished in {out}; when every shard has "
              f"finished, the same command without --shard merges them", file=sys.stderr)
    elif writer:
        print(exp.table(summary).text())
        print(f"results in {out}", file=sys.stderr)
    return 0


def _cmd_show(args) -> int:
    from . import experiments
    from .results import load_run

    run = load_run(args.run_dir)
    name = run["config"].get("experiment")
    if not isinstance(name, str):
        from .results import RunFileError

        raise RunFileError(f"{args.run_dir / 'config.json'}: names no experiment; the file is corrupt")
    print(json.dumps(run["config"], indent=2))
    if run["summary"] is None:
        steps = run["metrics"][-1]["step"] if run["metrics"] else 0
        print(f"(unfinished: last logged step {steps}; rerun the same command to resume)")
        return 0
    try:
        text = experiments.get(name).table(run["summary"]).text()
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        from .results import RunFileError

        raise RunFileError(f"{args.run_dir / 'summary.json'}: cannot be read as a {name} summary "
                           f"({type(e).__name__}: {e}); rerun with --reevaluate to rewrite it") from None
    print(text)
    return 0


def _cmd_report(args) -> int:
    from .report import build_report, results_page
    from .results import atomic_write_bytes, refuse_run_file

    if args.paper and not args.out:
        raise ValueError("--paper writes a results page: give its file with --out")
    if args.out:
        refuse_run_file(args.out)
    if args.paper:
        if len(args.run_dirs) != 1:
            raise ValueError("--paper takes one directory of archived runs (e.g. docs/runs)")
        text = results_page(args.paper, args.run_dirs[0], args.out)
    else:
        text = build_report(args.run_dirs, args.out)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(args.out, text.encode())
        print(f"report written to {args.out}", file=sys.stderr)
    else:
        print(text)
    return 0


def _error_line(e: BaseException) -> None:
    """``spheres: error: MESSAGE`` on one line (a multi-line message is joined)."""
    text = " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
    print(f"spheres: error: {text}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the command; in a multi-process run, tell the other processes how it ended and leave
    without JAX's shutdown handshake after a failure (the others may be gone)."""
    from . import distributed

    try:
        code = _main(argv)
    except BaseException:
        if distributed.process_count_if_started() < 2:
            raise
        import traceback

        traceback.print_exc()
        code = 1
    if distributed.process_count_if_started() > 1:
        if code:
            distributed.abandon(code)
        distributed.finish(True)
    return code


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from .config import ConfigError
    from .results import RunDirConflict

    try:
        if args.command == "list":
            return _cmd_list()
        if args.command == "describe":
            return _cmd_describe(args)
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "report":
            return _cmd_report(args)
        return _cmd_show(args)
    except (ConfigError, RunDirConflict, FileNotFoundError, PermissionError, NotADirectoryError,
            ValueError) as e:
        _error_line(e)
        return 2
    except OSError as e:
        _error_line(e)
        return 2
    except FloatingPointError as e:     # NonFiniteError: training diverged
        print(f"spheres: error: {e} (e.g. --set lr=...)", file=sys.stderr)
        return 2
    except MemoryError:
        print("spheres: error: out of memory; lower d, hidden/widths, batch, eval_chunk or "
              "attack_samples", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spheres: interrupted; rerun the same command to resume from the last checkpoint",
              file=sys.stderr)
        return 130
    except Exception as e:
        from . import distributed

        if type(e).__name__ != "JaxRuntimeError" or distributed.process_count_if_started() < 2:
            raise
        # a collective failed: another process died while this one waited for it
        print(f"spheres: error: lost contact with another process of the run ({_first_line(e)}); "
              f"rerun the same command on every process to resume from the last checkpoint",
              file=sys.stderr)
        return distributed.EXIT_PEER_LOST


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
