"""Training curves to DVCLive, so that ``dvc plots`` shows them."""
import os.path as osp

from mmengine.visualization import DVCLiveVisBackend
from mmseg.registry import VISBACKENDS


@VISBACKENDS.register_module()
class SafeDVCLiveVisBackend(DVCLiveVisBackend):
    """mmengine's ``DVCLiveVisBackend`` without its side effects on the
    repository.

    mmengine's backend runs ``dvc init -f --no-scm`` in the current folder
    whenever git has no user signature configured (which would overwrite the
    project's DVC setup) and, by default, saves every run as a DVC
    experiment (git refs in the user's repository); DVCLive itself edits the
    dvc.yaml at the repository root; on closing, mmengine's backend tracks
    the run's config and log files as DVC artifacts (``.dvc`` files in the
    work dir). This one only logs params and metrics with a ``dvclive.Live``
    in ``save_dir`` (or ``init_kwargs['dir']``).
    """

    def _init_env(self):
        from dvclive import Live
        kwargs = dict(self._init_kwargs or {})
        kwargs.setdefault('dir', self._save_dir)
        kwargs.setdefault('save_dvc_exp', False)
        kwargs.setdefault('cache_images', False)
        # By default DVCLive adds its metrics and plots to the dvc.yaml at the
        # repository root, i.e. the project's pipeline; keep them beside the
        # run instead, where `dvc plots show` still finds them.
        kwargs.setdefault('dvcyaml', osp.join(kwargs['dir'], 'dvc.yaml'))
        self._dvclive = Live(**kwargs)

    def close(self) -> None:
        if hasattr(self, '_dvclive'):
            self._dvclive.end()
