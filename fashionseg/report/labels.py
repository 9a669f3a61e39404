"""How the report names the harness's models, datasets, tables and
metrics, and how it writes a missing or signed figure."""
# The harness's models, in the order the tables list them.
MODEL_NAMES = {
    'fpn_x101': 'FPN (ResNeXt-101), the paper\'s head',
    'semfpn_x101': 'Semantic FPN (ResNeXt-101)',
    'pspnet_r101': 'PSPNet (ResNet-101-D8)',
    'fcn_r101': 'FCN (ResNet-101-D8)',
}
DATASET_NAMES = {'fashionista': 'Fashionista', 'cfpd': 'CFPD', 'ccp': 'CCP'}
# Which run a table is made of: the test-set predictions without and with
# the CRF (paper Tables 1 and 2).
STAGES = {'without_crf': 'test', 'with_crf': 'crf'}
TABLE_TITLES = {'without_crf': 'Table 1: without CRF',
                'with_crf': 'Table 2: with CRF'}
# The tables' main IoU column is Tangseng et al.'s per-image mean, the
# definition behind the figures the paper cites (docs/pipeline.md, "The
# report"); the pooled foreground and MMSegmentation's mIoU stand beside it.
MAIN_IOU = 'imgIoU'
METRIC_LABELS = {
    'aAcc': 'acc',
    'imgIoU': 'IoU',
    'fgIoU': 'fgIoU (pooled)',
    'mIoU': 'mIoU (mmseg)',
}
NOT_RUN = 'not run yet'
NOT_REPORTED = '–'
ABSENT = 'absent'


def signed(value: float) -> str:
    return f'{value:+.2f}'
