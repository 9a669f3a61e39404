"""Batch norms folded into the convolutions before them, for inference.

In eval mode a batch norm is a per-channel scale and shift; folded into
the weights and bias of the convolution whose output it normalises, it
costs nothing at run time (one pass over every activation less). The pairs
are found by running the model once: a batch norm whose input is exactly
the output tensor of a convolution (mmcv's ``ConvModule``, the ResNet
blocks and stems of MMSegmentation's backbones). torch's
``fuse_conv_bn_eval`` computes the folded convolution; the batch norm
becomes an identity. The folded model's output is compared with the
model's before, so that a pair the search got wrong (a convolution whose
output something else also reads) is an error, not a silent change.
"""
import copy
from typing import Callable, Dict, List, Tuple

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import fuse_conv_bn_eval

# The folded model's output may differ from the model's by rounding only.
FOLD_TOLERANCE = 1e-3


class BatchNormFoldError(RuntimeError):
    """Folding changed the model's output beyond rounding."""


def conv_batch_norm_pairs(model: nn.Module, run: Callable[[], object]
                          ) -> List[Tuple[str, str]]:
    """(convolution name, batch norm name) of each batch norm that reads
    a convolution's output directly, while ``run()`` runs the model."""
    names = {module: name for name, module in model.named_modules()}
    outputs: Dict[int, Tuple[torch.Tensor, nn.Module]] = {}
    pairs: Dict[nn.Module, set] = {}

    def after_conv(conv, _, output):
        # The tensor is kept with its id, so that no id is reused.
        outputs[id(output)] = (output, conv)

    def before_norm(norm, inputs):
        found = outputs.get(id(inputs[0]))
        pairs.setdefault(norm, set()).add(
            found[1] if found is not None and found[0] is inputs[0]
            else None)

    handles = [module.register_forward_hook(after_conv)
               for module in model.modules()
               if type(module) is nn.Conv2d]
    handles += [module.register_forward_pre_hook(before_norm)
                for module in model.modules()
                if isinstance(module, _BatchNorm)]
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    # A batch norm counts only if it always read the same convolution.
    return [(names[next(iter(convs))], names[norm])
            for norm, convs in pairs.items()
            if len(convs) == 1 and None not in convs
            and norm.track_running_stats and not norm.training]


def fold_batch_norms(model: nn.Module, example: torch.Tensor,
                     forward: Callable[[nn.Module, torch.Tensor],
                                       torch.Tensor]) -> nn.Module:
    """A copy of ``model`` (in eval mode) with each batch norm that reads
    a convolution's output folded into it; ``forward(model, example)``
    runs it. Raises :class:`BatchNormFoldError` if the folded copy's
    output differs from the model's beyond rounding."""
    folded = copy.deepcopy(model).eval()
    # The run that finds the pairs gives the model's own output in eval
    # mode (a model in training mode would normalise by the batch and
    # update its running statistics).
    outputs = []
    pairs = conv_batch_norm_pairs(
        folded, lambda: outputs.append(forward(folded, example)))
    for conv_name, norm_name in pairs:
        conv = folded.get_submodule(conv_name)
        norm = folded.get_submodule(norm_name)
        _replace(folded, conv_name, fuse_conv_bn_eval(conv, norm))
        _replace(folded, norm_name, nn.Identity())
    with torch.no_grad():
        expected = outputs[0].float()
        got = forward(folded, example).float()
    scale = float(expected.abs().max()) or 1.0
    difference = float((got - expected).abs().max())
    if difference > FOLD_TOLERANCE * scale:
        raise BatchNormFoldError(
            f'folding {len(pairs)} batch norms changed the model\'s '
            f'output by up to {difference:.3g} (outputs up to {scale:.3g})'
            ': a folded convolution\'s output is read elsewhere too')
    return folded


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attribute = name.rpartition('.')
    setattr(model.get_submodule(parent) if parent else model, attribute,
            module)
