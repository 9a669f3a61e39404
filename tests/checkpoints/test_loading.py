"""Resume and checkpoint loading under torch's weights-only unpickling."""
import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch
from conftest import tiny_runner_cfg
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner
from PIL import Image

from fashionseg.checkpoints.loading import (UnsafeCheckpointError, from_plain,
                                            load_local_checkpoint, to_plain)


def _train(data_root, work_dir, max_epochs, resume=False):
    cfg = tiny_runner_cfg(data_root, work_dir, max_epochs=max_epochs)
    cfg.resume = resume
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def _adam_steps(optimizer_state):
    return [int(s['step']) for s in optimizer_state['state'].values()]


def test_resume_continues_from_saved_state(synthetic_dataset, tmp_path):
    work_dir = tmp_path / 'work'
    first = _train(synthetic_dataset, work_dir, max_epochs=1)
    ckpt_path = work_dir / 'epoch_1.pth'
    saved = torch.load(ckpt_path, weights_only=True)  # plain data only
    assert saved['meta']['epoch'] == 1
    first_loss_len = len(saved['message_hub']['log_scalars']['train/loss']
                         ['log_history'])
    assert first_loss_len == 2  # 4 images, batch 2
    steps_after_first = _adam_steps(saved['optimizer'])

    second = _train(synthetic_dataset, work_dir, max_epochs=2, resume=True)
    assert second.train_loop.epoch == 2
    assert second.train_loop.iter == 4
    # The loss history went on from the first run's instead of restarting.
    history = second.message_hub.get_scalar('train/loss')
    assert isinstance(history, HistoryBuffer)
    assert len(history.data[0]) == 4
    np.testing.assert_allclose(
        history.data[0][:2],
        saved['message_hub']['log_scalars']['train/loss']['log_history'])
    # Adam's state came from the checkpoint: two more steps on top of it.
    final = torch.load(work_dir / 'epoch_2.pth', weights_only=True)
    assert _adam_steps(final['optimizer']) == [
        s + 2 for s in steps_after_first]
    assert first.model is not second.model


def test_trained_checkpoint_loads_for_testing(synthetic_dataset, tmp_path):
    work_dir = tmp_path / 'work'
    _train(synthetic_dataset, work_dir, max_epochs=1)
    ckpt = str(work_dir / 'epoch_1.pth')
    best = [p for p in os.listdir(work_dir) if p.startswith('best_aAcc')]
    assert best, 'the best-accuracy checkpoint was not written'

    cfg = tiny_runner_cfg(synthetic_dataset, tmp_path / 'test',
                          max_epochs=1)
    cfg.load_from = ckpt
    metrics = Runner.from_cfg(cfg).test()

    from mmseg.apis import inference_model, init_model
    model = init_model(cfg, ckpt, device='cpu')
    assert model.dataset_meta['classes'] == ('c0', 'c1', 'c2')
    image = str(synthetic_dataset / 'img_dir' / 'val' / '0000.png')
    result = inference_model(model, image)
    assert result.pred_sem_seg.data.shape == (1, 48, 40)
    # The test's accuracy is the loaded weights' own: counted here from
    # init_model's predictions on the same images.
    loader = cfg.test_dataloader.dataset.data_prefix
    correct = total = 0
    for path in sorted((synthetic_dataset / loader.img_path).iterdir()):
        pred = inference_model(model, str(path)).pred_sem_seg.data[0].numpy()
        label = np.asarray(Image.open(
            synthetic_dataset / loader.seg_map_path / path.name))
        correct += int((pred == label).sum())
        total += label.size
    assert metrics['aAcc'] == pytest.approx(100 * correct / total, abs=0.01)


class _RunsCode:
    """An object whose unpickling calls os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


@pytest.mark.parametrize('legacy', [False, True])
def test_checkpoint_that_would_run_code_is_refused(synthetic_dataset,
                                                   tmp_path, legacy):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    payload = {'meta': {}, 'state_dict': OrderedDict(),
               'message_hub': _RunsCode(marker)}
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy)

    with pytest.raises(UnsafeCheckpointError) as info:
        load_local_checkpoint(str(path))
    assert str(path) in str(info.value)
    assert 'system' in str(info.value)
    assert not marker.exists()

    # The same refusal on mmengine's own loading paths, as a user reaches
    # them: Runner.resume, load_from and init_model.
    from mmseg.apis import init_model
    for resume in (True, False):
        cfg = tiny_runner_cfg(synthetic_dataset, tmp_path / f'r{resume}',
                              max_epochs=1)
        cfg.resume, cfg.load_from = resume, str(path)
        runner = Runner.from_cfg(cfg)
        with pytest.raises(UnsafeCheckpointError):
            runner.train() if resume else runner.test()
        assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError):
        init_model(tiny_runner_cfg(synthetic_dataset, tmp_path / 'i',
                                   max_epochs=1), str(path), device='cpu')
    assert not marker.exists()


def test_plain_conversion_round_trips_history_buffers():
    buffer = HistoryBuffer([1.5, 2.5], [1, 2], max_length=10)
    state = {'log_scalars': OrderedDict(loss=buffer),
             'runtime_info': {'best_score': np.float64(0.75),
                              'shape': np.array([2, 3])}}
    plain = to_plain(state)
    loaded = from_plain(pickle.loads(pickle.dumps(plain)))
    restored = loaded['log_scalars']['loss']
    assert isinstance(restored, HistoryBuffer)
    np.testing.assert_array_equal(restored.data[0], [1.5, 2.5])
    np.testing.assert_array_equal(restored.data[1], [1, 2])
    assert restored.max_length == 10
    assert type(plain['runtime_info']['best_score']) is float
    assert plain['runtime_info']['shape'] == [2, 3]


def test_unconvertible_object_is_named_at_save_time():
    with pytest.raises(TypeError, match=r"checkpoint\['meta'\]\['fn'\]"):
        to_plain({'meta': {'fn': len}}, 'checkpoint')


def _checkpoint(path, epoch):
    torch.save({'state_dict': {'w': torch.arange(50000.) * epoch},
                'meta': {'epoch': epoch}}, path)
    return path


def _damage_middle(path):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in
                                     data[middle:middle + 64])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize('damage', ['middle', 'empty', 'text', 'cut'])
def test_a_damaged_checkpoint_is_refused_with_its_name(tmp_path, damage):
    from fashionseg.checkpoints.loading import (DamagedCheckpointError,
                                                load_local_checkpoint)
    path = _checkpoint(tmp_path / 'epoch_1.pth', 1)
    if damage == 'middle':  # its end (the zip directory) intact
        _damage_middle(path)
    elif damage == 'empty':
        path.write_bytes(b'')
    elif damage == 'text':
        path.write_text('not a checkpoint\n')
    else:
        path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 3])
    with pytest.raises(DamagedCheckpointError, match=str(path)):
        load_local_checkpoint(str(path))


def test_resuming_skips_a_damaged_newest_checkpoint_and_says_why(tmp_path):
    from fashionseg.runner.run_state import newest_whole_checkpoint
    _checkpoint(tmp_path / 'epoch_1.pth', 1)
    _checkpoint(tmp_path / 'epoch_2.pth', 2)
    _damage_middle(_checkpoint(tmp_path / 'epoch_3.pth', 3))
    (tmp_path / 'epoch_4.pth').write_bytes(b'PK\x03\x04 half a save')
    newest, skipped = newest_whole_checkpoint(tmp_path)
    assert newest == tmp_path / 'epoch_2.pth'
    assert [path for path, _ in skipped] == [
        str(tmp_path / 'epoch_4.pth'), str(tmp_path / 'epoch_3.pth')]
    assert 'interrupted save' in skipped[0][1]
    assert 'fails its checksum' in skipped[1][1]
