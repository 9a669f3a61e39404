"""Saving the decode head's class scores of every test image, the input of
the dense-CRF stage (paper sections 2 and 4.2).

Each image gets ``STEM.npz`` with ``scores`` (the decode head's output
before upsampling: num_classes x h x w, float16), ``stem``, ``height`` and
``width`` (the image's size, to which the CRF upsamples the scores), and
``input_height`` / ``input_width`` (the network input the scores cover; larger
than the image only where a batch was padded, at the bottom and right).
"""
import contextlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

from fashionseg.evaluation.score_files import save_scores
from fashionseg.utils.output_folder import (claimed_output_folder,
                                            remove_unwritten)


@HOOKS.register_module()
class SaveDecodeScoresHook(Hook):
    """Save the decode head's output of every test image.

    Under :class:`fashionseg.inference.loops.SegmenterTestLoop` the
    scores come with each data sample (``decode_scores``). Under another
    loop, a forward hook on the decode head's classifier (``conv_seg``,
    the last layer of every MMSegmentation decode head; the head's
    ``predict`` calls its ``forward`` directly, which module hooks do not
    see) keeps the raw
    scores before the segmentor upsamples them; ``after_test_iter`` pairs
    them with the batch's images.

    The files are compressed and written by background threads (at most
    ``MAX_PENDING`` images queued), so that compression does not hold the
    device; ``after_test`` waits for them and raises the first error.
    """

    priority = 'LOW'
    MAX_PENDING = 32

    def __init__(self, out_dir: str, writers: int = 2,
                 keep: Sequence[str] = ()):
        self.out_dir = Path(out_dir)
        # Files of this run that the hook does not write (the metrics and
        # their confusion matrices, when they go into ``out_dir``).
        self.keep = [Path(p) for p in keep]
        self.writers = writers
        self._captured = None
        self._handle = None
        self._executor = None
        self._pending = []
        self._earlier = []
        self._written = []
        self._lock = None

    def before_test(self, runner) -> None:
        # A folder of someone else's files (or the dataset's) is refused;
        # an earlier run's files this run does not rewrite go once it has
        # finished.
        data_roots = [runner.cfg.get(loader, {}).get('dataset', {}).get(
            'data_root') for loader in ('test_dataloader', 'val_dataloader')]
        # One run at a time writes there: the folder is held until
        # after_test, or the process's end.
        self._lock = contextlib.ExitStack()
        self._earlier = self._lock.enter_context(claimed_output_folder(
            self.out_dir, 'tools/test.py', inputs=data_roots,
            main_process=runner.rank == 0, kinds=('.npz', '.json')))
        self._written = list(self.keep)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(self.writers)
        self._pending = []
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model

        def capture(module, inputs, output):
            self._captured = output.detach()

        self._handle = model.decode_head.conv_seg.register_forward_hook(
            capture)

    def after_test_iter(self, runner, batch_idx: int, data_batch=None,
                        outputs: Optional[Sequence] = None) -> None:
        if all(s.get('decode_scores') is not None for s in outputs):
            scores = [s.decode_scores.float().cpu().numpy() for s in outputs]
        elif self._captured is None:
            raise RuntimeError('the decode head produced no output to save')
        else:
            scores = self._captured.float().cpu().numpy()
        if len(scores) != len(outputs):
            raise RuntimeError(
                f'captured {len(scores)} score maps for {len(outputs)} images;'
                ' test with whole-image inference (test_cfg.mode="whole")')
        for sample, image_scores in zip(outputs, scores):
            stem = Path(sample.img_path).stem
            height, width = sample.ori_shape
            # The network input the scores cover: the image padded at the
            # bottom and right to the model's size divisor (``pad_shape``,
            # set by the data preprocessor when it pads at test time).
            input_height, input_width = sample.metainfo.get(
                'pad_shape', sample.metainfo.get('batch_input_shape',
                                                 sample.img_shape))[:2]
            self._written.append(self.out_dir / f'{stem}.npz')
            self._pending.append(self._executor.submit(
                save_scores, self.out_dir / f'{stem}.npz', image_scores,
                stem, height, width, input_height, input_width))
        self._captured = None
        while len(self._pending) > self.MAX_PENDING:
            self._pending.pop(0).result()

    def after_test(self, runner) -> None:
        try:
            self._finish(runner)
        finally:
            if self._lock is not None:
                self._lock.close()
                self._lock = None

    def _finish(self, runner) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if self._executor is not None:
            try:
                for future in self._pending:
                    future.result()
            finally:
                self._pending = []
                self._executor.shutdown()
                self._executor = None
        if runner.world_size == 1:
            # (Each process of a distributed test writes its own images:
            # none knows what the others wrote.)
            removed = remove_unwritten(self._earlier, self._written)
            if removed:
                runner.logger.info(
                    f'removed {removed} score file(s) of an earlier run '
                    f'from {self.out_dir} that this run did not cover')
