"""Saving checkpoints so that an interrupted save loses nothing.

mmengine's ``CheckpointHook`` deletes the oldest kept checkpoint (and the
previous best one) before it writes the new one, and writes in place: a
training killed during a save (0.6 GB at full size) is left with a truncated
file and no earlier one, which no rerun can resume. :class:`SafeCheckpointHook`
keeps mmengine's hook and its settings and changes only the order of the
file operations: each checkpoint is written to a hidden temporary file and
renamed into place, and the files it replaces are removed only once the
new one is complete. ``prepare_auto_resume``
(:mod:`fashionseg.runner.run_state`) then resumes from the newest
checkpoint that is whole.
"""
import os
import os.path as osp
from contextlib import contextmanager

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmseg.registry import HOOKS

PARTIAL_SUFFIX = '.partial'


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with atomic saves and deferred removals."""

    @contextmanager
    def _safely(self, runner):
        """Within the block: ``runner.save_checkpoint`` writes through a
        temporary file and a rename, and removals of old checkpoints are
        recorded; after it, they are carried out (and skipped if the block
        failed, so that the old checkpoints stay)."""
        if getattr(self, '_deferring', False):
            # mmengine's best-checkpoint save runs the periodic save within.
            yield
            return
        backend = self.file_backend
        removals, saved = [], set()
        save = runner.save_checkpoint

        def save_atomically(out_dir, filename, *args, **kwargs):
            partial = f'.{filename}{PARTIAL_SUFFIX}'
            save(out_dir, partial, *args, **kwargs)
            if is_main_process():
                os.replace(osp.join(out_dir, partial),
                           osp.join(out_dir, filename))
            saved.add(osp.abspath(osp.join(out_dir, filename)))

        backend.remove = lambda path: removals.append(('remove', path))
        backend.rmtree = lambda path: removals.append(('rmtree', path))
        runner.save_checkpoint = save_atomically
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
            del backend.remove, backend.rmtree
            runner.save_checkpoint = save
        for how, path in removals:
            # Never the file just written (a best checkpoint saved again
            # under its old name).
            if osp.abspath(path) not in saved:
                getattr(backend, how)(path)

    def _save_checkpoint_with_step(self, runner, step, meta):
        with self._safely(runner):
            super()._save_checkpoint_with_step(runner, step, meta)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        with self._safely(runner):
            super()._save_best_checkpoint(runner, metrics)
