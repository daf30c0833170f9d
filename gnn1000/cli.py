"""``gnn1000``: train, evaluate, list, tune, bench."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings

from gnn1000 import bench  # light: lists benchmark modules, imports none of them
from gnn1000.errors import Gnn1000Error, paragraph
from gnn1000.logs import cli_logging

#: How many times ``train --workers`` restarts all workers from the last checkpoint after one is lost.
DEFAULT_MAX_FAILURES = 2

# Messages go to this logger; a command's result (the final scores, a table, a listing) is printed.
log = logging.getLogger(__name__)


def _quiet_third_party_warnings() -> None:
    # PyG warns at import about torch.jit.script; it is noise for a CLI user.
    warnings.filterwarnings("ignore", message=".*torch.jit.*", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*torch.jit.*", category=UserWarning)


def cmd_train(args: argparse.Namespace) -> int:
    from gnn1000 import config as gin_config
    from gnn1000 import repeats, resume
    from gnn1000.build import build_experiment
    from gnn1000.distributed import Launch
    from gnn1000.rundir import RunDir, RunSession

    launch = Launch.detect()  # torchrun: one data-parallel run, rank 0 owns the run directory (gnn1000.distributed)
    launch.check_flags(args)
    launch.take_scratch(args)
    parallel = _data_parallel_flags(args)
    if args.seeds is not None or args.folds is not None or (args.resume and repeats.is_repeated_run(args.resume)):
        return repeats.cmd_train_repeats(args)
    if args.resume:
        if args.config is not None or args.run_dir is not None or args.overwrite:
            raise Gnn1000Error("--resume RUN_DIR continues that run from its own config.gin; give no CONFIG, "
                               "--run-dir or --overwrite with it (bindings are allowed, e.g. more epochs).")
        run = RunDir.existing(args.resume)
        gin_config.load(run.config, args.bind)  # first: a typo'd binding gets gin's "did you mean"
        resume.check_bindings(run.config.read_text(errors="replace"), args.bind, str(run.config))
    else:
        loaded = gin_config.load(args.config or gin_config.DEFAULT_CONFIG, args.bind)
        run = (RunDir.for_new_run(args.run_dir, args.overwrite) if args.run_dir
               else RunDir.new(gin_config.run_name(loaded.name)))
    log.info(f"run directory: {run.path}")
    if parallel:
        from gnn1000.tune.data_parallel import train_with_workers

        summary = train_with_workers(run, resume=bool(args.resume), workers=args.workers,
                                     gpus_per_worker=args.gpus_per_worker, address=args.address,
                                     storage=args.storage,
                                     max_failures=DEFAULT_MAX_FAILURES if args.max_failures is None else args.max_failures)
        _print_summary(summary, run)
        return 0
    # held before the data is built: a run in progress here is reported at once
    with launch, RunSession(run, new=not args.resume):  # torchrun: leaving parts the ranks, drops a scratch run
        experiment = build_experiment(run.path, progress=not args.no_progress, ranks=launch.join())  # torchrun: joins
        if experiment.cfg.compare_step_memory:  # a typo is reported now, not after training
            from gnn1000.variants import check_variant

            for model in experiment.cfg.compare_step_memory:
                check_variant(model)
        log.info(f"{experiment.cfg.architecture} on {experiment.data.name}: "
                 f"{experiment.num_parameters:,} parameters, device {experiment.device}")
        log.debug(f"settings: {experiment.cfg}")
        summary = experiment.fit(resume=bool(args.resume))
        if experiment.cfg.compare_step_memory and launch.is_main:  # torchrun: rank 0 only
            from gnn1000 import safefs
            from gnn1000.variants import compare_step_memory

            log.info(f"measuring one training step of {', '.join(experiment.cfg.compare_step_memory)} at the "
                     f"same depth and width ...")
            summary = compare_step_memory(run.config, summary, experiment.cfg.compare_step_memory)
            safefs.write_atomic(run.summary, (json.dumps(summary, indent=2, default=repr) + "\n").encode())
    if launch.is_main:  # torchrun: rank 0 only
        _print_summary(summary, run)
    return 0


def _data_parallel_flags(args: argparse.Namespace) -> bool:
    """True for a data-parallel run (--workers); its companion flags alone, or with --seeds or
    --folds, are refused."""
    given = [flag for flag, value in (("--gpus-per-worker", args.gpus_per_worker), ("--address", args.address),
                                      ("--storage", args.storage), ("--max-failures", args.max_failures))
             if value is not None]
    if args.workers is None:
        if given:
            raise Gnn1000Error(f"{', '.join(given)} only apply to a data-parallel run; add --workers N "
                               f"(N Ray Train workers), or leave {'them' if len(given) > 1 else 'it'} out.")
        return False
    if args.seeds is not None or args.folds is not None:
        raise Gnn1000Error("--workers cannot be combined with --seeds or --folds: repeated runs train one "
                           "process each. Run 'gnn1000 train CONFIG --workers N' once per seed "
                           "(--bind 'experiment.seed = K', --run-dir DIR-K), or drop --workers.")
    if args.workers < 1:
        raise Gnn1000Error(f"--workers {args.workers}: the number of data-parallel workers must be >= 1.")
    if args.gpus_per_worker is not None and args.gpus_per_worker < 0:
        raise Gnn1000Error(f"--gpus-per-worker {args.gpus_per_worker:g}: must be >= 0 (0 trains on CPUs).")
    if args.max_failures is not None and args.max_failures < -1:
        raise Gnn1000Error(f"--max-failures {args.max_failures}: must be >= 0 (how many times Ray Train restarts "
                           f"the workers from the last checkpoint after one is lost), or -1 for no limit.")
    from gnn1000.extras import require

    for module in ("ray", "pyarrow"):  # Ray Train imports pyarrow; both come with the tune extra
        require(module, "tune", "gnn1000 train --workers (data-parallel training on Ray Train)")
    return True


def _print_summary(summary: dict, run) -> None:
    best = summary["best"]
    metric = summary["metric"]
    depth = f"{summary['num_layers']}-layer " if summary["num_layers"] else ""
    print(f"final test {metric}: {summary['test_at_best_valid']:.4f} "
          f"(model of epoch {best['epoch']}, best valid {metric} {best[f'valid_{metric}']:.4f}); "
          f"{depth}{summary['architecture']}, memory {summary['step_memory_mb']:.0f} MB "
          f"({summary['memory_kind']}); results in {run.path}", flush=True)
    if summary.get("depth_ceiling") is not None:
        hops = f" ({summary['hops']} hops)" if summary.get("hops") not in (None, summary["num_layers"]) else ""
        print(f"depth ceiling on these test graphs: {summary['depth_ceiling']:.4f} for this {depth}model{hops}, "
              f"{summary['shallow_ceiling']:.4f} for a 3-hop one (a 3-layer ResGNN)", flush=True)
    comparison = summary.get("step_memory_comparison")
    if comparison:
        own, models = comparison["own"], comparison["models"]
        shown = [f"{m}-{comparison['layers']} " + (f"{r['step_memory_mb']:.0f} MB" if "error" not in r else r["error"])
                 for m, r in models.items()]
        print(f"one training step, each in a fresh process ({memory_kind(models)}): {', '.join(shown)}", flush=True)
        if "error" not in models.get(own, {"error": 1}):
            for m, r in models.items():
                if m != own and "error" not in r:
                    print(f"{m} needs {r['step_memory_mb'] / max(models[own]['step_memory_mb'], 1e-9):.1f}x "
                          f"the memory of {own} at {comparison['layers']} layers", flush=True)


def memory_kind(results: dict) -> str:
    from gnn1000 import memory

    devices = {r.get("device") for r in results.values() if "device" in r}
    return "; ".join(memory.KIND[d].replace("the epoch", "the step") for d in sorted(devices)) or "not measured"


def _trained(args: argparse.Namespace):
    """The run's experiment with its best or last weights, evaluation settings rebound by --bind."""
    from gnn1000 import checkpoint, guard, repeats, resume
    from gnn1000.build import load_run
    from gnn1000.rundir import RunDir

    repeats.refuse_parent(args.run_dir, f"gnn1000 {args.command}")
    run = RunDir.existing(args.run_dir)
    resume.check_evaluation_bindings(run.config.read_text(errors="replace"), args.bind, str(run.config),
                                     f"gnn1000 {args.command}")
    experiment = load_run(run.path, args.bind, progress=False)
    path = (checkpoint.best_weights(experiment.run.best, experiment.run.last) if args.checkpoint == "best"
            else experiment.run.last)
    if not path.is_file():
        raise Gnn1000Error(f"{args.run_dir} has no {args.checkpoint} checkpoint ({path}); train it first.")
    experiment.load_weights(path)
    bad = guard.nonfinite_parameter(experiment.evaluated)
    if bad is not None:  # its scores or predictions would be NaN: nothing is computed or written
        raise Gnn1000Error(
            f"{path} holds non-finite weights ({bad!r} has NaN or Inf), so its scores and predictions would "
            f"be meaningless; nothing was written. Use another checkpoint ('--checkpoint last', or "
            f"{checkpoint.previous(experiment.run.last).name}), or continue training from a finite one with "
            f"'gnn1000 train --resume {run.path}' and a lower experiment.lr.")
    return experiment


def cmd_evaluate(args: argparse.Namespace) -> int:
    print(json.dumps(_trained(args).evaluate(), indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gnn1000 import predictions

    experiment = _trained(args)
    out = Path(args.out) if args.out else experiment.run.path / "predictions.csv"
    if out.suffix not in predictions.FORMATS:  # before the model runs
        raise Gnn1000Error(f"--out {out}: predictions go to a .csv or .parquet file (chosen by extension).")
    logits = experiment.predict()
    if not bool(logits.isfinite().all()):
        raise Gnn1000Error(f"The model's outputs are not finite (finite weights, overflowing activations), "
                           f"so no predictions were written to {out}. Try --bind \"experiment.precision = "
                           f"'32'\" or another checkpoint (--checkpoint last).")
    frame = predictions.table(logits, experiment.data)
    predictions.write(frame, out)
    print(f"{len(frame):,} predictions ({', '.join(f'{s}: {n:,}' for s, n in frame['split'].value_counts().items())}) "
          f"written to {out}")
    submission = predictions.ogb_test_submission(logits, experiment.data, out)
    if submission is not None:
        print(f"OGB test predictions (Evaluator input form, y_pred) written to {submission}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gnn1000 import repeats
    from gnn1000.plot import plot_runs

    for run_dir in args.run_dirs:
        repeats.refuse_parent(run_dir, "gnn1000 plot")

    out = Path(args.out) if args.out else Path(args.run_dirs[0]) / "curves.png"
    print(f"training curves of {len(args.run_dirs)} run(s) written to {plot_runs(args.run_dirs, out)}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from gnn1000 import registry
    from gnn1000.config import shipped_configs

    kinds = [args.kind] if args.kind else registry.KINDS
    for kind in kinds:
        entries = registry.describe(kind)
        print(f"{kind}:")
        for entry in entries:
            print(f"  {entry.name:<24} {entry.origin:<32} {entry.target}")
        if not entries:
            print("  (none)")
    if not args.kind:
        print("configs:")
        for name in shipped_configs():
            print(f"  {name}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from gnn1000.extras import require

    require("ray", "tune", "gnn1000 tune (Ray Tune searches)")
    from gnn1000.tune import run_search

    result = run_search(args.search, bindings=args.bind, num_samples=args.num_samples, address=args.address,
                        storage=args.storage, resume=args.resume)
    return 0 if result["best"] is not None else 1


def cmd_bench(args: argparse.Namespace) -> int:
    return bench.run(args.name, args.args)


def build_parser() -> argparse.ArgumentParser:
    from gnn1000 import __version__

    parser = argparse.ArgumentParser(prog="gnn1000", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a model from a gin config (default: the built-in job)")
    train.add_argument("config", nargs="?", help="a .gin path or the name of a shipped config")
    train.add_argument("--bind", action="append", default=[], metavar="'KEY=VALUE'",
                       help="a gin binding, e.g. 'resgnn.num_layers = 28' (repeatable)")
    train.add_argument("--run-dir", help="where to write the run (default: runs/<config>-<timestamp>)")
    train.add_argument("--resume", metavar="RUN_DIR",
                       help="continue a run from its last intact checkpoint; bindings may change its "
                            "epochs, lr, weight decay, grad clipping and evaluation settings")
    train.add_argument("--overwrite", action="store_true",
                       help="--run-dir may hold an old run: move it aside to DIR.old-<timestamp> first")
    train.add_argument("--seeds", metavar="N|K,K,...", help="one run per seed in RUN_DIR/seed-<k>/ and their "
                                                           "mean ± std: a count (3: seeds 0,1,2) or a list (0,3,7)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--folds", type=int, metavar="N",
                       help="k-fold cross-validation: one run per fold in RUN_DIR/fold-<k>/ and the mean ± std "
                            "(datasets with a 'folds' option, e.g. tu)")
    train.add_argument("--workers", type=int, metavar="N",
                       help="train one model data-parallel in N Ray Train workers (DDP; gloo on CPU, NCCL on GPU)")
    train.add_argument("--gpus-per-worker", type=float, metavar="G",
                       help="GPUs each worker holds (default 0: CPUs; with several workers a whole GPU each, as NCCL needs)")
    train.add_argument("--address", help="with --workers: join a running Ray cluster ('auto' or HOST:PORT); "
                                         "default: a new local Ray")
    train.add_argument("--storage", help="with --workers: Ray Train's storage for checkpoints, shared by every node "
                                         "(an NFS path or s3://...); default: ray-train/ beside the run directory")
    train.add_argument("--max-failures", type=int, metavar="N",
                       help="with --workers: how many times a lost worker restarts all workers from the last "
                            f"checkpoint (default {DEFAULT_MAX_FAILURES}; -1: no limit)")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="score a run's model on every split")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--checkpoint", choices=("best", "last"), default="best")
    evaluate.add_argument("--bind", action="append", default=[], metavar="'KEY=VALUE'",
                          help="an evaluation setting, e.g. 'random_partition.num_views = 10' (repeatable)")
    evaluate.set_defaults(func=cmd_evaluate)

    predict = sub.add_parser("predict", help="write a run's predictions, one row per node or graph with its split")
    predict.add_argument("run_dir")
    predict.add_argument("--checkpoint", choices=("best", "last"), default="best")
    predict.add_argument("--out", help="a .csv or .parquet file (default: RUN_DIR/predictions.csv)")
    predict.add_argument("--bind", action="append", default=[], metavar="'KEY=VALUE'",
                         help="an evaluation setting, e.g. 'random_partition.num_views = 10' (repeatable)")
    predict.set_defaults(func=cmd_predict)

    plot = sub.add_parser("plot", help="draw runs' loss, metrics and learning rate against epochs to a PNG")
    plot.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    plot.add_argument("--out", help="the PNG to write (default: the first RUN_DIR/curves.png)")
    plot.set_defaults(func=cmd_plot)

    tune = sub.add_parser("tune", help="run a Ray Tune search from a search file (e.g. tune/resgnn)")
    tune.add_argument("search", help="a search .gin path or the name of a shipped one (gnn1000 list)")
    tune.add_argument("--bind", action="append", default=[], metavar="'KEY=VALUE'",
                      help="a gin binding applied to every trial, e.g. 'experiment.epochs = 20' (repeatable)")
    tune.add_argument("--num-samples", type=int, help="how many configs to sample (default: search.num_samples)")
    tune.add_argument("--address", help="join a running Ray cluster ('auto' or HOST:PORT); default: the "
                                        "cluster 'ray start' runs on this machine, else a new local Ray")
    tune.add_argument("--storage", help="where trials and checkpoints go; shared by every node of a cluster "
                                        "(an NFS path or s3://...); default: runs/tune")
    tune.add_argument("--resume", action="store_true",
                      help="continue the latest interrupted run of this search under --storage")
    tune.set_defaults(func=cmd_tune)

    listing = sub.add_parser("list", help="registered components, where they come from, shipped configs")
    listing.add_argument("kind", nargs="?", choices=None, help="one registry kind only")
    listing.set_defaults(func=cmd_list)

    benchmark = sub.add_parser("bench", help="benchmarks that print ratios (memory, speed, ...); "
                                             "'gnn1000 bench NAME --help' for options")
    benchmark.add_argument("name", help=f"which benchmark: {', '.join(bench.available())}")
    benchmark.add_argument("args", nargs=argparse.REMAINDER, help="options of that benchmark")
    benchmark.set_defaults(func=cmd_bench)
    for command in [parser, *sub.choices.values()]:  # 'gnn1000 -q train' and 'gnn1000 train -q' alike
        _verbosity_options(command, default=0 if command is parser else argparse.SUPPRESS)
    return parser


def _verbosity_options(parser: argparse.ArgumentParser, default) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="count", default=default,
                       help="more messages (debugging detail)")
    group.add_argument("-q", "--quiet", action="count", default=default,
                       help="only warnings, errors and the command's result")


def _refuse_empty(args: argparse.Namespace) -> None:
    """An empty string is not 'not given': '' as a config, folder or file would otherwise start the
    default job, write under runs/ or into the run directory."""
    for name in ("config", "run_dir", "resume", "out", "storage", "address", "search"):
        if getattr(args, name, None) == "":
            option = {"config": "CONFIG", "search": "SEARCH", "run_dir": "--run-dir" if args.command == "train"
                      else "RUN_DIR"}.get(name, f"--{name.replace('_', '-')}")
            raise Gnn1000Error(f"{option} is an empty string; give a value (or leave the option out for its "
                               f"default).")
    if "" in (getattr(args, "run_dirs", None) or []):
        raise Gnn1000Error("RUN_DIR is an empty string; give the path of a run directory.")


def main(argv: list[str] | None = None) -> int:
    _quiet_third_party_warnings()
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        _refuse_empty(args)
        with cli_logging(args.verbose - args.quiet):
            return args.func(args)
    except Gnn1000Error as exc:
        print(f"gnn1000 {args.command}: error: {paragraph(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # the filesystem refused (no space, no permission): one paragraph, not a traceback
        from gnn1000.safefs import fs_error_paragraph

        print(f"gnn1000 {args.command}: error: {fs_error_paragraph(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # a search says itself how it continues (gnn1000.tune.launcher)
        print(f"gnn1000 {args.command}: {exc}" if str(exc) else
              "interrupted; a run continues with 'gnn1000 train --resume RUN_DIR'", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
