"""``gnn1000 bench paper``: the paper's claims measured on one device, within a time limit.

1. Peak training-step memory and step time against depth: ResGNN-64, RevGNN-80, WT-RevGNN-80 (the
   paper's Fig. 3), ResGNN until it runs out of memory; DEQ-GNN-64 against its iteration limit.
2. RevGNN-Deep (1001 x 80, 2 groups, GEN softmax) and RevGNN-Wide (448 x 224): one training step each,
   against the paper's 2.86 GB and 7.91 GB.
3. Step time of RevGNN, ResGNN and PyG's ``GroupAddRev`` at one depth all fit, in fp32, bf16 and fp16.
4. Exactness: reversible gradients against ``reversible=False`` (float32 stream, float64 stream, bf16).
5. A few epochs of ``ogbg-molhiv/revgnn-256-graphnorm`` from the data root (epoch time).

Each section gets a share of ``--minutes`` (what one leaves passes on); a point that would overrun is
recorded as skipped and the files are written with what was measured. Memory is what ``gnn1000 bench
memory`` measures in one process: ``torch.cuda.max_memory_allocated`` reset per point on CUDA, the
resident set's peak on CPU (so a CPU figure includes the interpreter and is never a GPU figure).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from gnn1000.bench import memory, speed
from gnn1000.bench._workload import Workload, _revgnn, make_graph
from gnn1000.errors import ConfigError, paragraph

# Model key in the shared workload -> (the paper's name, its width).
SWEPT = {"resgnn": ("ResGNN-64", 64), "revgnn": ("RevGNN-80", 80), "wt-revgnn": ("WT-RevGNN-80", 80)}
DEQ = {"deq": ("DEQ-GNN-64", 64)}
SPEED_MODELS = ("revgnn", "resgnn", "groupaddrev")
PRECISIONS = ("32", "bf16", "16")
EXACTNESS = {"float32 stream": ({"stream_dtype": None}, "32"), "float64 stream": ({}, "32"),
             "bf16 autocast": ({}, "bf16")}
MOLHIV = "ogbg-molhiv/revgnn-256-graphnorm"
# Shares of --minutes, in the order the sections run; time a section leaves unused goes to the next.
MEMORY_KIND = {"cuda": "torch.cuda.max_memory_allocated, reset per point",
               "cpu": "peak resident set of this process (interpreter and libraries included), reset per point"}
SHARES = {"depth": 0.35, "deep_wide": 0.15, "speed": 0.15, "exactness": 0.15, "deq": 0.1, "molhiv": 0.1}


@dataclass(frozen=True)
class Scale:
    nodes: int
    edges: int
    depths: tuple[int, ...]
    deq_iterations: tuple[int, ...]
    deep: tuple[int, int, float]  # layers, channels, the paper's GB
    wide: tuple[int, int, float]
    speed_layers: int  # at most; lowered to the deepest ResGNN-64 that fitted
    rounds: int
    warmup: int
    exact_layers: int
    exact_nodes: int  # reversible=False keeps every layer's activations: a smaller graph
    exact_edges: int
    molhiv_epochs: int
    molhiv_bindings: tuple[str, ...] = ()


SCALES = {
    # One of 10 random parts of ogbn-proteins: 132,534 / 10 nodes, ~79M / 100 directed edges.
    "paper": Scale(nodes=13_253, edges=790_000, depths=(8, 16, 32, 64, 112, 128, 256, 512, 1001),
                   deq_iterations=(5, 10, 20, 40, 80), deep=(1001, 80, 2.86), wide=(448, 224, 7.91),
                   speed_layers=32, rounds=5, warmup=1, exact_layers=1001, exact_nodes=2000, exact_edges=10_000,
                   molhiv_epochs=3),
    "tiny": Scale(nodes=40, edges=160, depths=(2, 4), deq_iterations=(2, 3), deep=(4, 80, 2.86),
                  wide=(2, 224, 7.91), speed_layers=2, rounds=1, warmup=0, exact_layers=8, exact_nodes=40,
                  exact_edges=160, molhiv_epochs=1,
                  molhiv_bindings=("experiment.graphs_per_epoch = 32", "revgnn.num_layers = 2")),
}


class Budget:
    """The run's deadline, handed out to sections by share; a section's unused time passes on."""

    def __init__(self, minutes: float):
        self.end = time.monotonic() + 60 * minutes
        self.left = dict(SHARES)

    def section(self, name: str) -> float:
        """The deadline (``time.monotonic``) of section ``name``, which starts now."""
        share = self.left.pop(name) / (sum(self.left.values()) + SHARES[name])
        now = time.monotonic()
        return now + share * max(self.end - now, 0.0)


def check_device(name: str):
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: this machine has no CUDA device that PyTorch can use "
                          f"(torch {torch.__version__}, CUDA build {torch.version.cuda}). Use --device cpu, "
                          "or run bench/gpu/run.sh on a GPU machine.")
    return torch.device(name)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s))"


def _point(w: Workload, sizes: dict, device):
    """The memory sweep's point: the model at its own width, measured in this process."""
    def point(model: str, depth: int, prec: str) -> dict:
        return memory.measure_or_oom(model, depth, replace(w, channels=sizes[model][1], precision=prec), str(device))
    return point


def depth_sweep(w: Workload, models: dict, depths, device, deadline: float, log) -> list[dict]:
    with warnings.catch_warnings():  # DEQ at tolerance 0 never converges, by design: no warning for it
        warnings.simplefilter("ignore")
        points = memory.sweep(list(models), list(depths), ["32"], _point(w, models, device), deadline, log)
    return [{**p, "name": models[p["model"]][0]} for p in points]


def deep_and_wide(w: Workload, scale: Scale, device, deadline: float, log) -> list[dict]:
    rows = []
    for name, (layers, channels, paper_gb) in (("RevGNN-Deep", scale.deep), ("RevGNN-Wide", scale.wide)):
        sizes = {"revgnn": (name, channels)}
        point = memory.sweep(["revgnn"], [layers], ["32"], _point(w, sizes, device), deadline, log)[0]
        gb = point["peak_mb"] / 1024 if point.get("peak_mb") else None
        rows.append({**point, "name": name, "channels": channels, "peak_gb": gb, "paper_gb": paper_gb,
                     "ratio_to_paper": gb / paper_gb if gb else None})
    return rows


def step_time_ratios(w: Workload, layers: int, scale: Scale, device, deadline: float, log) -> dict:
    """Median step time per model and precision (one precision at a time, so the budget can stop it)."""
    import torch

    medians, notes = {}, []

    def noted(line: str) -> None:  # what step_times skipped goes into the report too
        notes.append(line.strip())
        log(line)

    for prec in PRECISIONS:
        if time.monotonic() >= deadline:
            notes.append(f"precision {prec} skipped (time budget)")
            continue
        try:
            times = speed.step_times(list(SPEED_MODELS), layers, w, [prec], device, scale.rounds, scale.warmup,
                                     log=noted)
        except torch.cuda.OutOfMemoryError as exc:
            notes.append(f"precision {prec}: out of memory ({str(exc).splitlines()[0][:120]})")
            torch.cuda.empty_cache()
            continue
        for p, by_model in times.items():
            medians[p] = {m: statistics.median(ts) for m, ts in by_model.items()}
    return {"layers": layers, "channels": w.channels, "median_s": medians, "notes": notes}


def _gradients(model, graph, prec: str, device, seed: int):
    import torch
    import torch.nn.functional as F

    from gnn1000 import precision

    model.train().zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the same dropout mask in both models
    with precision.autocast(device, prec):
        out = model(graph["x"], graph["edge_index"], graph["edge_attr"])
    F.binary_cross_entropy_with_logits(out.float(), graph["y"]).backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def gradient_difference(w: Workload, layers: int, mode: str, device) -> dict:
    """Max abs and max relative (per tensor, to its largest reference entry) gradient difference
    between the reversible model and the same weights through plain autograd."""
    import torch

    opts, prec = EXACTNESS[mode]
    torch.manual_seed(w.seed)
    rev = _revgnn(w, layers, **opts).to(device)
    graph = make_graph(w, device)
    ours = _gradients(rev, graph, prec, device, w.seed)
    state = rev.state_dict()
    del rev
    ref = _revgnn(w, layers, reversible=False, **opts).to(device)
    ref.load_state_dict(state)
    theirs = _gradients(ref, graph, prec, device, w.seed)
    abs_diff = {n: (ours[n] - g).abs().max().item() for n, g in theirs.items()}
    rel_diff = {n: d / max(theirs[n].abs().max().item(), 1e-30) for n, d in abs_diff.items()}
    worst = max(rel_diff, key=rel_diff.get)
    return {"mode": mode, "layers": layers, "status": "ok", "max_abs": max(abs_diff.values()),
            "max_rel": rel_diff[worst], "worst_parameter": worst, "parameters_compared": len(theirs)}


def exactness(w: Workload, layers: int, device, deadline: float, log) -> list[dict]:
    import torch

    from gnn1000 import precision

    rows = []
    for mode, (_, prec) in EXACTNESS.items():
        reason = precision.unsupported(device, prec)
        if reason or time.monotonic() >= deadline:
            rows.append({"mode": mode, "layers": layers, "status": f"skipped ({reason or 'time budget'})"})
        else:
            try:
                rows.append(gradient_difference(w, layers, mode, device))
            except torch.cuda.OutOfMemoryError as exc:
                rows.append({"mode": mode, "layers": layers,
                             "status": f"out of memory: {str(exc).splitlines()[0][:120]}"})
                torch.cuda.empty_cache()
        r = rows[-1]
        log(f"  {mode:<15} {layers:>5}: " + (f"max abs {r['max_abs']:.2e}, max rel {r['max_rel']:.2e}"
                                             if r["status"] == "ok" else r["status"]))
    return rows


def molhiv_epochs(scale: Scale, device, run_dir: Path, deadline: float, log) -> dict:
    """A few training epochs of the shipped molhiv config from the data root (``GNN1000_DATA``)."""
    from gnn1000 import config, dataroot
    from gnn1000.build import build_experiment

    root = dataroot.data_root()
    if time.monotonic() >= deadline:
        return {"config": MOLHIV, "status": "skipped (time budget)"}
    if not (root / "ogb" / "ogbg_molhiv").is_dir():
        return {"config": MOLHIV, "status": f"skipped (no ogb/ogbg_molhiv under the data root {root}; "
                                            f"set {dataroot.ROOT_ENV})"}
    bindings = [f"experiment.device = '{device}'", *scale.molhiv_bindings]
    config.load(MOLHIV, bindings)
    start = time.monotonic()
    try:
        experiment = build_experiment(run_dir, progress=False)
    except ImportError as exc:  # a bare GPU machine may lack OGB or what it imports (scikit-learn, scipy)
        return {"config": MOLHIV, "status": f"skipped (missing package: {exc})"}
    load_s, seconds = time.monotonic() - start, []
    for _ in range(scale.molhiv_epochs):
        if seconds and time.monotonic() + seconds[-1] > deadline:
            break
        start = time.monotonic()
        experiment.train_epoch()
        experiment.epoch += 1
        seconds.append(time.monotonic() - start)
        log(f"  {MOLHIV} epoch {len(seconds)}: {seconds[-1]:.1f} s")
    epochs = experiment.cfg.epochs
    full = not scale.molhiv_bindings  # a subset's epoch says nothing about the config's full run
    return {"config": MOLHIV, "status": "ok", "bindings": bindings, "load_s": load_s, "epoch_s": seconds,
            "parameters": experiment.num_parameters, "config_epochs": epochs,
            "full_run_h": statistics.median(seconds) * epochs / 3600 if seconds and full else None}


# -- the report ---------------------------------------------------------------------------------

def _fmt(value, fmt: str, missing: str = "-") -> str:
    return format(value, fmt) if value is not None else missing


def _cell(points: list[dict], model: str, depth: int) -> str:
    p = next((p for p in points if p["model"] == model and p["layers"] == depth), None)
    if p is None:
        return ""
    if p.get("peak_mb"):
        return f"{p['peak_mb']:.0f} MB / {p['step_s']:.2f} s"
    return "OOM" if memory.out_of_memory(p) or "out of memory" in p["status"] else p["status"].split(" (")[0]


def markdown(report: dict) -> str:
    lines = [f"# gnn1000 bench paper: {report['scale']} scale on {report['device_name']}", "",
             f"Workload: {report['workload']['nodes']} nodes, {report['workload']['edges']} edges, "
             f"{report['workload']['operator']}/{report['workload']['norm']}; memory: {report['memory_kind']}; "
             f"budget {report['minutes']:g} min, used {report['elapsed_s'] / 60:.1f} min.", ""]
    for title, key, models, unit in (("Peak memory / step time against depth", "depth", SWEPT, "layers"),
                                     ("DEQ-GNN against its iteration limit", "deq", DEQ, "iterations")):
        points = report[key]
        lines += [f"## {title}", "", f"| {unit} | " + " | ".join(n for n, _ in models.values()) + " |",
                  "|---:|" + "---:|" * len(models)]
        for d in sorted({p["layers"] for p in points}):
            lines.append(f"| {d} | " + " | ".join(_cell(points, m, d) for m in models) + " |")
        lines.append("")
    lines += ["## RevGNN-Deep and RevGNN-Wide, one training step", "",
              "| model | layers x channels | peak GB | paper GB | ratio | step s | status |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for r in report["deep_wide"]:
        lines.append(f"| {r['name']} | {r['layers']} x {r['channels']} | {_fmt(r['peak_gb'], '.2f')} | "
                     f"{r['paper_gb']} | {_fmt(r['ratio_to_paper'], '.2f')} | {_fmt(r.get('step_s'), '.2f')} | "
                     f"{r['status']} |")
    s = report["speed"]
    lines += ["", f"## Step time at {s['layers']} layers x {s['channels']} channels (median)", "",
              "| precision | RevGNN ms | ResGNN ms | GroupAddRev ms | RevGNN / ResGNN | RevGNN / GroupAddRev |",
              "|---|---:|---:|---:|---:|---:|"]
    for prec, med in s["median_s"].items():
        ms = {m: med.get(m) for m in SPEED_MODELS}
        ratio = (lambda a, b: f"{ms[a] / ms[b]:.2f}" if ms[a] and ms[b] else "-")
        lines.append(f"| {prec} | " + " | ".join(_fmt(ms[m] and ms[m] * 1e3, ".1f") for m in SPEED_MODELS)
                     + f" | {ratio('revgnn', 'resgnn')} | {ratio('revgnn', 'groupaddrev')} |")
    lines += [f"- {note}" for note in s["notes"]]
    lines += ["", "## Exactness: reversible gradients against reversible=False", "",
              "| mode | layers | max abs diff | max rel diff | status |", "|---|---:|---:|---:|---|"]
    for r in report["exactness"]:
        lines.append(f"| {r['mode']} | {r['layers']} | {_fmt(r.get('max_abs'), '.2e')} | "
                     f"{_fmt(r.get('max_rel'), '.2e')} | {r['status']} |")
    m = report["molhiv"]
    lines += ["", f"## {m['config']}", ""]
    if m["status"] == "ok":
        lines.append(f"{len(m['epoch_s'])} epoch(s): " + ", ".join(f"{t:.1f} s" for t in m["epoch_s"])
                     + f" (load {m['load_s']:.1f} s; bindings: {', '.join(m['bindings'])}); "
                     + (f"its {m['config_epochs']} epochs: about {m['full_run_h']:.2f} h." if m["full_run_h"] is not None
                      else "a subset: no estimate of the full run."))
    else:
        lines.append(m["status"])
    if report.get("errors"):
        lines += ["", "## Errors", "", *(f"- {e}" for e in report["errors"])]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gnn1000 bench paper", description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=list(SCALES), default="paper",
                        help="paper: an ogbn-proteins-sized part and the paper's depths; tiny: seconds on a CPU")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when PyTorch sees a GPU, else cpu")
    parser.add_argument("--minutes", type=float, default=7.0, help="time limit of the whole run")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads on CPU (as bench speed)")
    parser.add_argument("--replot", type=Path, metavar="PAPER_JSON",
                        help="measure nothing: write the table and plot of an earlier run's paper.json to --out")
    parser.add_argument("--out", type=Path, required=True, help="folder for paper.json, paper.md, memory-vs-depth.png")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.replot:
        if not args.replot.is_file():
            raise ConfigError(f"--replot {args.replot}: no such file; give the paper.json an earlier run wrote.")
        args.out.mkdir(parents=True, exist_ok=True)
        write(json.loads(args.replot.read_text()), args.out)
        return 0
    if not args.minutes > 0 or args.minutes == float("inf"):
        raise ConfigError(f"--minutes {args.minutes:g}: the time limit must be a positive number of minutes.")
    device = check_device(args.device or ("cuda" if _cuda() else "cpu"))
    if device.type == "cpu":
        import torch

        torch.set_num_threads(args.threads)
    started, scale = time.monotonic(), SCALES[args.scale]
    w = Workload(nodes=scale.nodes, edges=scale.edges)
    exact_w = replace(w, nodes=scale.exact_nodes, edges=scale.exact_edges)
    args.out.mkdir(parents=True, exist_ok=True)

    def log(line: str) -> None:
        print(line, flush=True)

    log(f"gnn1000 bench paper: {args.scale} scale, {device_name(device)}, {args.minutes:g} min")
    gc.freeze()  # each point's gc.collect then skips the libraries' objects: 0.5 s less per point on a small CPU
    try:
        report = run(args, device, scale, w, exact_w, log)
    finally:
        gc.unfreeze()
    report["elapsed_s"] = time.monotonic() - started
    write(report, args.out)
    return 0


def run(args, device, scale: Scale, w: Workload, exact_w: Workload, log) -> dict:
    """Every section in turn, each within its share of the time left."""
    budget = Budget(args.minutes)
    report = {"scale": args.scale, "scale_settings": asdict(scale), "device": str(device),
              "device_name": device_name(device), "minutes": args.minutes, "workload": asdict(w),
              "memory_kind": MEMORY_KIND[device.type]}
    report["errors"] = []
    # One untimed step first: the first point would otherwise pay for CUDA's context and library handles.
    memory.measure("revgnn", 2, replace(w, nodes=min(w.nodes, 100), edges=min(w.edges, 400)), str(device))

    def section(key: str, title: str, measure, empty):
        """One section; an unexpected failure is reported beside the others' numbers, not raised."""
        log(title)
        try:
            report[key] = measure()
        except Exception as exc:  # one device call is all there may be: keep what the other sections measure
            traceback.print_exc()
            report["errors"].append(f"{title}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            report[key] = empty

    section("depth", "memory and step time against depth",
            lambda: depth_sweep(w, SWEPT, scale.depths, device, budget.section("depth"), log), [])
    section("deep_wide", "RevGNN-Deep and RevGNN-Wide",
            lambda: deep_and_wide(w, scale, device, budget.section("deep_wide"), log), [])
    fitted = [p["layers"] for p in report["depth"] if p["model"] == "resgnn" and p.get("peak_mb")]
    layers = min(scale.speed_layers, max(fitted)) if fitted else scale.speed_layers
    speed_w = replace(w, channels=SWEPT["resgnn"][1])  # ResGNN-64's width, so the depth it fitted at is known
    section("speed", f"step time at {layers} layers",
            lambda: step_time_ratios(speed_w, layers, scale, device, budget.section("speed"), log),
            {"layers": layers, "channels": speed_w.channels, "median_s": {}, "notes": []})
    report["exactness_workload"] = asdict(exact_w)
    section("exactness", f"exactness at {scale.exact_layers} layers ({exact_w.nodes} nodes, {exact_w.edges} edges)",
            lambda: exactness(exact_w, scale.exact_layers, device, budget.section("exactness"), log), [])
    section("deq", "DEQ-GNN against its iteration limit",
            lambda: depth_sweep(w, DEQ, scale.deq_iterations, device, budget.section("deq"), log), [])
    section("molhiv", MOLHIV,
            lambda: molhiv_epochs(scale, device, args.out / "molhiv-run", budget.section("molhiv"), log),
            {"config": MOLHIV, "status": "failed (see errors)"})
    return report


def write(report: dict, out: Path) -> None:
    """paper.json and paper.md, then the plot; without matplotlib (a bare GPU machine) the plot is left
    for ``--replot`` on another machine, and the numbers are kept either way."""
    table = markdown(report)
    (out / "paper.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "paper.md").write_text(table)
    print("\n" + table, flush=True)
    png = out / "memory-vs-depth.png"
    try:
        names = {m: n for m, (n, _) in SWEPT.items()}
        memory.plot([{**p, "model": names[p["model"]]} for p in report["depth"]], list(names.values()), png,
                    f"{report['workload']['nodes']} nodes, {report['workload']['edges']} edges, "
                    f"{report['device_name']}", value=lambda p: p["peak_mb"],
                    ylabel="peak memory of one training step (MB)")
    except (ConfigError, ImportError) as exc:
        print(f"no plot: {paragraph(exc)}; draw it elsewhere with 'gnn1000 bench paper --replot "
              f"{out / 'paper.json'} --out DIR'", flush=True)
    else:
        print(f"wrote {out / 'paper.json'}, {out / 'paper.md'} and {png}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
