"""The segmentation head of the paper's FPN (Martinsson and Mogren, 2019,
section 2)."""
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS


@MODELS.register_module()
class ConcatFPNHead(BaseDecodeHead):
    """The paper's head on top of MMSegmentation's ``FPN`` neck.

    Section 2 of the paper, line by line:

    * "features C2..C5 of the backbone" and "lateral 1x1 convolutions give
      F_i; P5 = F5, P_i = NearestUpsample(P_{i+1}, 2) + F_i": the ``FPN``
      neck before this head (``upsample_cfg=dict(mode='nearest')``).
    * "each P_i is upsampled to the size of P2 and the four are
      concatenated": ``input_transform='resize_concat'`` over
      ``in_index=(0, 1, 2, 3)`` (bilinear resize, then ``torch.cat`` on the
      channel axis; :meth:`_transform_inputs`).
    * "two convolution layers": ``self.fuse`` (3x3 convolution, norm, ReLU
      over the concatenation) and ``conv_seg`` (1x1 convolution to the class
      scores).
    * "a softmax and a final upsampling": done by MMSegmentation at the
      segmentor level (the scores are resized to the input size, the
      cross-entropy loss and the prediction apply the softmax).

    MMSegmentation's ``FPNHead`` (semantic FPN) instead sums per-level heads;
    it is kept as a separate config for comparison.
    """

    def __init__(self, **kwargs):
        super().__init__(input_transform='resize_concat', **kwargs)
        self.fuse = ConvModule(
            self.in_channels,  # the sum of the levels' channels
            self.channels,
            3,
            padding=1,
            conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg,
            act_cfg=self.act_cfg)

    def forward(self, inputs):
        """Concatenate the upsampled pyramid levels and classify."""
        x = self._transform_inputs(inputs)
        return self.cls_seg(self.fuse(x))
