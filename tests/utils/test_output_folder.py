"""Output folders a tool owns: a folder of someone else's files (or the
tool's input) refused, an earlier run's files this run did not write
removed, temporaries cleared."""
import pytest

from fashionseg.utils.output_folder import (MARKER, OutputFolderError,
                                            claim_output_folder,
                                            remove_unwritten)


def test_an_output_folder_is_the_tools_or_refused(tmp_path):
    folder = tmp_path / 'crf_test'
    assert claim_output_folder(folder, 'tools/crf.py apply') == []
    for name in ('a.png', 'b.png', 'metrics.json', '.a.tmp-x1.png',
                 'notes.txt'):
        (folder / name).write_bytes(b'x')
    # An earlier run's files of the kinds the tool writes, not a user's
    # note put there since.
    earlier = claim_output_folder(folder, 'tools/crf.py apply',
                                  kinds=('.png', '.json'))
    assert [p.name for p in earlier] == ['a.png', 'b.png', 'metrics.json']
    assert not (folder / '.a.tmp-x1.png').exists()
    assert remove_unwritten(earlier, [folder / 'a.png',
                                      folder / 'metrics.json']) == 1
    assert sorted(p.name for p in folder.iterdir()) == [
        MARKER, 'a.png', 'metrics.json', 'notes.txt']
    # Another tool's folder, a folder of the user's files, an input.
    with pytest.raises(OutputFolderError, match="tools/test.py did not "
                       "write .*the folder of tools/crf.py apply"):
        claim_output_folder(folder, 'tools/test.py')
    theirs = tmp_path / 'theirs'
    theirs.mkdir()
    (theirs / 'x.png').write_text('mine')
    (theirs / '.x.tmp-1.png').write_text('mine too')
    with pytest.raises(OutputFolderError, match='x.png'):
        claim_output_folder(theirs, 'tools/crf.py apply')
    assert sorted(p.name for p in theirs.iterdir()) == ['.x.tmp-1.png',
                                                        'x.png']
    data = tmp_path / 'data'
    with pytest.raises(OutputFolderError, match='lies within the input'):
        claim_output_folder(data / 'ann_dir' / 'test', 'tools/crf.py apply',
                            inputs=[data])
    with pytest.raises(OutputFolderError, match='is a file'):
        claim_output_folder(theirs / 'x.png', 'tools/crf.py apply')
