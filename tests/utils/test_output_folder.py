"""Output folders a tool owns: someone else's files refused, an earlier
run's files this run did not write removed, temporaries cleared."""
import pytest

from fashionseg.utils.output_folder import (OutputFolderError,
                                            claim_output_folder,
                                            remove_unwritten)


def test_an_output_folder_is_the_tools_or_refused(tmp_path):
    folder = tmp_path / 'crf_test'
    assert claim_output_folder(folder, ('*.png',), 'tools/crf.py') == []
    folder.mkdir()
    for name in ('a.png', 'b.png', 'metrics.json', '.a.tmp-x1.png'):
        (folder / name).write_bytes(b'x')
    earlier = claim_output_folder(folder, ('*.png', '*.json'),
                                  'tools/crf.py')
    assert [p.name for p in earlier] == ['a.png', 'b.png', 'metrics.json']
    assert not (folder / '.a.tmp-x1.png').exists()
    assert remove_unwritten(earlier, [folder / 'a.png',
                                      folder / 'metrics.json']) == 1
    assert sorted(p.name for p in folder.iterdir()) == ['a.png',
                                                        'metrics.json']
    (folder / 'notes.txt').write_text('mine')
    with pytest.raises(OutputFolderError, match='notes.txt'):
        claim_output_folder(folder, ('*.png',), 'tools/crf.py')
    assert (folder / 'notes.txt').read_text() == 'mine'
    with pytest.raises(OutputFolderError, match='is a file'):
        claim_output_folder(folder / 'notes.txt', ('*.png',), 'tools/crf.py')
