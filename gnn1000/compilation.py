"""``experiment.compile = True``: the training steps call ``torch.compile`` of the model.

Dynamic shapes (``dynamic=True``): every random partition, cluster or graph mini-batch has its own
node and edge counts, and a graph specialised to each would recompile every step. The DEQ's solver
loop stays out of the compiled graph (:meth:`gnn1000.nn.DEQ._solve` is ``torch.compiler.disable``'d):
its iteration count changes from solve to solve, and a traced loop recompiles for each count.
The model itself is left as it is (its ``state_dict``, the weight average's copy, evaluation run
eagerly): only what the training steps call is the compiled wrapper, which shares its parameters.
"""

from __future__ import annotations

import torch

from gnn1000.nn.deq import DEQ

BACKEND = "inductor"  # torch.compile's default; tests on the CPU use 'aot_eager' (no C++ build per graph)


def compiled(model: torch.nn.Module, enabled: bool = True, backend: str | None = None) -> torch.nn.Module:
    """``model`` compiled for training steps when ``enabled``, else ``model`` itself."""
    if not enabled:
        return model
    if any(isinstance(m, DEQ) for m in model.modules()):
        # The implicit backward differentiates f's compiled graph again and again (retain_graph), which
        # a backward that reuses its saved buffers refuses; the switch is the one torch's error names,
        # read when the backward compiles (lazily, outside any scope here), so it is set for the process.
        torch._functorch.config.donated_buffer = False
    return torch.compile(model, dynamic=True, backend=backend or BACKEND)
