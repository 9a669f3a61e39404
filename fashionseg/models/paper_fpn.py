"""The feature pyramid of the paper's model (Martinsson and Mogren, 2019,
section 2, equation 1)."""
from mmseg.models.necks import FPN
from mmseg.models.utils import resize
from mmseg.registry import MODELS


@MODELS.register_module()
class PaperFPN(FPN):
    """MMSegmentation's ``FPN`` neck as the paper's equation 1 defines it:

        P5 = L5(C5),  P_i = Upsample(P_{i+1}) + L_i(C_i)  (i = 4, 3, 2)

    where L_i is a 1x1 lateral convolution and the upsampling doubles the
    size (nearest neighbour, ``upsample_cfg``); the P_i are the outputs.
    MMSegmentation's ``FPN`` adds a 3x3 output convolution on every level
    after this sum, which the equation does not have: this neck has none
    (no parameters either), and nothing else differs. The semantic-FPN
    baseline keeps MMSegmentation's ``FPN``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.num_outs != self.backbone_end_level - self.start_level:
            raise ValueError('PaperFPN outputs one level per backbone level '
                             '(equation 1 has no extra levels)')
        del self.fpn_convs

    def forward(self, inputs):
        assert len(inputs) == len(self.in_channels)
        levels = [lateral(inputs[i + self.start_level])
                  for i, lateral in enumerate(self.lateral_convs)]
        for i in range(len(levels) - 1, 0, -1):
            levels[i - 1] = levels[i - 1] + resize(
                levels[i], size=levels[i - 1].shape[2:], **self.upsample_cfg)
        return tuple(levels)
