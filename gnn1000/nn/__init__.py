"""Building blocks of deep GNNs, usable without the rest of gnn1000 (no gin, no registry setup).

- :class:`DeepGNN`: the shell of every deep model (encoder, input and edge dropout, output head,
  readout, checks, ``reset_parameters``, ``__repr__``); subclass it and implement only the stack.
- :class:`ReversibleStack`: L grouped reversible blocks run as one autograd function, activation
  memory O(ND) independent of depth; :meth:`ReversibleStack.from_conv` wraps any PyG conv.
- :class:`GroupedCoupling`: one grouped reversible block (PyG's ``GroupAddRev`` equations).
- :class:`PreActBlock`: Norm -> ReLU -> Dropout -> Conv, the paper's block body.
- :class:`DEQ`: a model-independent equilibrium layer around any ``f(z, x)``: root-find, implicit
  or phantom backward, solver statistics.
- :func:`build_operator` / :func:`build_norm`: a name, class or callable to a module with gnn1000's
  call convention.
"""

from gnn1000.nn.base import DeepGNN
from gnn1000.nn.blocks import OutputHead, PreActBlock
from gnn1000.nn.deq import DEQ, SolverConvergenceWarning
from gnn1000.nn.resolver import ModuleSpec, build_norm, build_operator
from gnn1000.nn.reversible import ConvBody, GroupedCoupling, ReversibleStack

__all__ = ["DeepGNN", "ReversibleStack", "GroupedCoupling", "ConvBody", "PreActBlock", "OutputHead", "DEQ",
           "SolverConvergenceWarning", "build_operator", "build_norm", "ModuleSpec"]
