"""tools/fetch_data.py: downloads from a local HTTP server, --from, checks."""
import http.server
import io
import threading
import zipfile

import pytest
from raw_formats import BUNDLED_CCP, fashionista_samples, write_fashionista_v7
from tool_process import run_tool

from custom_datasets.fetch import FetchError, fetch_release, safe_extract


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` by path, honouring ``Range: bytes=N-``."""
    files: dict = {}
    requests: list = []

    def do_GET(self):  # noqa: N802
        type(self).requests.append((self.path, self.headers.get('Range')))
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start, status = 0, 200
        if self.headers.get('Range', '').startswith('bytes='):
            start = int(self.headers['Range'][6:].split('-')[0])
            status = 206
        self.send_response(status)
        content_type = 'text/html' if body.startswith(b'<') else \
            'application/octet-stream'
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(body) - start))
        if status == 206:
            self.send_header('Content-Range',
                             f'bytes {start}-{len(body) - 1}/{len(body)}')
        self.send_header('Accept-Ranges', 'bytes')
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _RangeHandler.files = {}
    _RangeHandler.requests = []
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, f'http://127.0.0.1:{httpd.server_address[1]}'
    httpd.shutdown()
    httpd.server_close()


def _fashionista_bytes(tmp_path):
    path = write_fashionista_v7(tmp_path / 'src.mat', fashionista_samples(4),
                                [2])
    return path.read_bytes()


def _ccp_archive_bytes(top='clothing-co-parsing-fe34fb7'):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as archive:
        for path in sorted(BUNDLED_CCP.rglob('*')):
            if path.is_file():
                archive.write(path, f'{top}/{path.relative_to(BUNDLED_CCP)}')
    return buffer.getvalue()


def test_fetch_mat_over_http(tmp_path, server):
    httpd, base = server
    data = _fashionista_bytes(tmp_path)
    _RangeHandler.files['/data/fashionista-v1.0.mat'] = data
    out = tmp_path / 'raw'
    where = fetch_release('fashionista', out,
                          url=f'{base}/data/fashionista-v1.0.mat', quiet=True)
    assert where == out / 'fashionista-v1.0.mat'
    assert where.read_bytes() == data
    assert not list(out.glob('*.part'))


def test_fetch_resumes_partial_download(tmp_path, server):
    httpd, base = server
    data = _fashionista_bytes(tmp_path)
    _RangeHandler.files['/f.mat'] = data
    out = tmp_path / 'raw'
    out.mkdir()
    # What an interrupted earlier run leaves behind (gdown's partial file).
    (out / 'fashionista-v1.0.matABCDEFGH.part').write_bytes(data[:1000])
    where = fetch_release('fashionista', out, url=f'{base}/f.mat', quiet=True)
    assert where.read_bytes() == data
    assert ('/f.mat', 'bytes=1000-') in _RangeHandler.requests


def test_fetch_extracts_archive_to_release_layout(tmp_path, server):
    httpd, base = server
    _RangeHandler.files['/ccp.zip'] = _ccp_archive_bytes()
    out = tmp_path / 'raw'
    fetch_release('ccp', out, url=f'{base}/ccp.zip', quiet=True)
    assert (out / 'label_list.mat').is_file()
    assert len(list((out / 'photos').glob('*.jpg'))) == 30
    # No temporary download left; the release is marked complete.
    assert sorted(p.name for p in out.glob('.*')) == [
        '.fetch-complete', '.fetched-entries']
    # The fetched release converts.
    from custom_datasets.convert import convert_release
    assert convert_release('ccp', out, tmp_path / 'ccp')['test'] == 6


def test_html_page_instead_of_file_is_refused(tmp_path, server):
    httpd, base = server
    _RangeHandler.files['/f.mat'] = (b'<!DOCTYPE html><html><body>Sign in'
                                     b'</body></html>')
    out = tmp_path / 'raw'
    with pytest.raises(FetchError) as info:
        fetch_release('fashionista', out, url=f'{base}/f.mat', quiet=True,
                      retries=0)
    message = str(info.value)
    assert 'HTML page' in message
    assert '--from' in message and 'by hand' in message
    assert not (out / 'fashionista-v1.0.mat').exists()


def test_truncated_mat_is_refused(tmp_path):
    data = _fashionista_bytes(tmp_path)
    cut = tmp_path / 'cut.mat'
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(FetchError, match='truncated'):
        fetch_release('fashionista', tmp_path / 'raw', from_path=cut)
    assert not (tmp_path / 'raw' / 'fashionista-v1.0.mat').exists()


def test_truncated_zip_is_refused(tmp_path):
    data = _ccp_archive_bytes()
    cut = tmp_path / 'ccp.zip'
    cut.write_bytes(data[:len(data) - 5000])
    with pytest.raises(FetchError,
                       match='is not a zip archive .or is truncated.'):
        fetch_release('ccp', tmp_path / 'raw', from_path=cut)
    # Nothing was installed, and --skip-existing would not take it.
    from custom_datasets.fetch import release_present
    assert not release_present('ccp', tmp_path / 'raw')
    assert list((tmp_path / 'raw').iterdir()) == []


def test_from_local_file_and_folder(tmp_path):
    archive = tmp_path / 'ccp.zip'
    archive.write_bytes(_ccp_archive_bytes())
    fetch_release('ccp', tmp_path / 'a', from_path=archive)
    assert (tmp_path / 'a' / 'annotations' / 'pixel-level' /
            '0030.mat').is_file()
    fetch_release('ccp', tmp_path / 'b', from_path=BUNDLED_CCP)
    assert sorted(p.name for p in (tmp_path / 'b').iterdir()) == sorted(
        [p.name for p in BUNDLED_CCP.iterdir()]
        + ['.fetch-complete', '.fetched-entries'])


def test_archive_member_outside_target_is_refused(tmp_path):
    archive = tmp_path / 'evil.zip'
    with zipfile.ZipFile(archive, 'w') as zf:
        zf.writestr('release/label_list.mat', b'x')
        zf.writestr('../escaped.txt', b'x')
    target = tmp_path / 'target'
    target.mkdir()
    with pytest.raises(FetchError, match='outside the target'):
        safe_extract(archive, target)
    assert not (tmp_path / 'escaped.txt').exists()
    assert not list(target.iterdir())


def test_fetch_cli_reports_error_and_hint(tmp_path):
    bad = tmp_path / 'page.mat'
    bad.write_bytes(b'<html>quota exceeded</html>')
    result = run_tool('fetch_data.py', 'fashionista', '--out',
                      tmp_path / 'raw', '--from', bad)
    assert result.returncode != 0
    assert 'HTML page' in result.stderr
    assert 'fashionista-v1.0.mat' in result.stderr


# The pipeline's fetch stage: a hand download in data/downloads/DATASET,
# a release already in place, and the message when neither works.

def _fetch_cli(*args):
    return run_tool('fetch_data.py', *args, timeout=300)


def test_local_copy_is_used_and_an_existing_release_kept(tmp_path):
    downloads = tmp_path / 'downloads' / 'fashionista'
    downloads.mkdir(parents=True)
    data = _fashionista_bytes(tmp_path)
    (downloads / 'fashionista-v1.0.mat').write_bytes(data)
    out = tmp_path / 'raw' / 'fashionista'
    # No network needed: an unreachable URL is never tried.
    result = _fetch_cli('fashionista', '--out', out, '--local-copy',
                        downloads, '--skip-existing', '--url',
                        'http://127.0.0.1:9/none.mat')
    assert result.returncode == 0, result.stderr
    assert (out / 'fashionista-v1.0.mat').read_bytes() == data
    (downloads / 'fashionista-v1.0.mat').unlink()
    result = _fetch_cli('fashionista', '--out', out, '--local-copy',
                        downloads, '--skip-existing', '--url',
                        'http://127.0.0.1:9/none.mat')
    assert result.returncode == 0, result.stderr
    assert 'already in' in result.stdout


def test_missing_release_names_what_to_fetch_and_how(tmp_path, server):
    httpd, base = server  # serves nothing: every download is a 404
    downloads = tmp_path / 'downloads' / 'cfpd'
    out = tmp_path / 'raw' / 'cfpd'
    result = _fetch_cli('cfpd', '--out', out, '--local-copy', downloads,
                        '--skip-existing', '--url', f'{base}/cfpd.zip',
                        '--retries', '0')
    assert result.returncode != 0
    message = result.stderr
    assert 'error: Downloading cfpd' in message
    # The real cause, not only the catch-all's words.
    assert 'HTTPError: 404' in message and f'{base}/cfpd.zip' in message
    assert '--from' in message and f'{downloads}/' in message
    assert not any(p for p in out.rglob('*') if p.is_file())


def _archive(path, members):
    """A zip of (ZipInfo or name, bytes) members, deflated."""
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as archive:
        for member, data in members:
            archive.writestr(member, data)
    return path


def test_an_archive_that_expands_too_much_is_refused(tmp_path):
    # 64 MB of zeros deflate to about 64 KB: a member no release has.
    archive = _archive(tmp_path / 'bomb.zip', [
        ('release/label_list.mat', b'x'),
        ('release/zeros.bin', bytes(64 * 2**20))])
    result = _fetch_cli('ccp', '--out', str(tmp_path / 'raw'), '--from',
                        str(archive))
    assert result.returncode == 2
    assert 'MAX_COMPRESSION_RATIO' in result.stderr
    assert 'zeros.bin' in result.stderr
    assert not (tmp_path / 'raw' / 'zeros.bin').exists()
    # The total is limited too.
    small = _archive(tmp_path / 'big.zip', [('a.bin', bytes(range(256)) * 8),
                                            ('b.bin', bytes(range(256)) * 8)])
    target = tmp_path / 'target'
    target.mkdir()
    with pytest.raises(FetchError, match='MAX_EXTRACTED_BYTES'):
        safe_extract(small, target, max_bytes=3000)
    assert not list(target.iterdir())


def test_absolute_paths_and_links_in_an_archive_are_refused(tmp_path):
    absolute = _archive(tmp_path / 'absolute.zip', [
        ('release/label_list.mat', b'x'),
        (zipfile.ZipInfo('/tmp/planted.txt'), b'x')])
    link = zipfile.ZipInfo('release/photos')
    link.external_attr = (0o120777 << 16)
    linked = _archive(tmp_path / 'link.zip', [
        ('release/label_list.mat', b'x'), (link, b'/etc')])
    for archive, words in ((absolute, 'absolute path'),
                           (linked, 'symbolic link')):
        out = tmp_path / f'raw-{archive.stem}'
        result = _fetch_cli('ccp', '--out', str(out), '--from', str(archive))
        assert result.returncode == 2, result.stderr
        assert words in result.stderr
        assert not (out / 'label_list.mat').exists()


def test_an_interrupted_install_is_not_taken_for_a_release(tmp_path,
                                                           monkeypatch):
    archive = tmp_path / 'ccp.zip'
    archive.write_bytes(_ccp_archive_bytes())
    out = tmp_path / 'raw'
    fetch_release('ccp', out, from_path=archive)
    first = _fetch_cli('ccp', '--out', str(out), '--skip-existing')
    assert first.returncode == 0, first.stderr
    # Installing again, interrupted after the first entry was moved in.
    import custom_datasets.fetch as fetch
    moves = []
    real_replace = fetch.os.replace

    def replace_once(src, dst):
        if moves:
            raise KeyboardInterrupt
        moves.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(fetch.os, 'replace', replace_once)
    with pytest.raises(KeyboardInterrupt):
        fetch_release('ccp', out, from_path=archive)
    monkeypatch.setattr(fetch.os, 'replace', real_replace)
    assert not fetch.release_present('ccp', out)
    # --skip-existing does not accept it; fetching again completes it.
    again = _fetch_cli('ccp', '--out', str(out), '--skip-existing',
                       '--from', str(archive))
    assert again.returncode == 0, again.stderr
    assert fetch.release_present('ccp', out)
    assert (out / 'photos' / '0001.jpg').read_bytes() == \
        (BUNDLED_CCP / 'photos' / '0001.jpg').read_bytes()


def test_a_users_files_in_out_are_never_replaced_or_removed(tmp_path,
                                                           server):
    """A release goes into a new or empty folder, or one a fetch wrote;
    a user's folder of the same names as the release's, or a user's file
    named as the MATLAB release, is left as it is, with one error line
    before anything is fetched."""
    import custom_datasets.fetch as fetch
    archive = tmp_path / 'ccp.zip'
    archive.write_bytes(_ccp_archive_bytes())
    out = tmp_path / 'mine'
    (out / 'photos').mkdir(parents=True)
    (out / 'photos' / 'holiday.jpg').write_bytes(b'my photo')
    (out / 'README.md').write_text('my notes')
    result = _fetch_cli('ccp', '--out', str(out), '--from', str(archive))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f'error: --out {out} holds 2 entries no fetch put there (README.md, '
        'photos); the release would replace or mix with them: give a new '
        'or empty folder (or, for a release an interrupted fetch of an '
        'earlier version left, remove the folder and fetch again)']
    assert (out / 'photos' / 'holiday.jpg').read_bytes() == b'my photo'
    assert sorted(p.name for p in out.rglob('*')) == [
        'README.md', 'holiday.jpg', 'photos']
    # A folder a fetch wrote is replaced by the next fetch, and a user's
    # file added to it since stops that fetch.
    ours = tmp_path / 'raw'
    fetch_release('ccp', ours, from_path=archive)
    fetch_release('ccp', ours, from_path=archive)
    assert fetch.release_present('ccp', ours)
    (ours / 'notes.txt').write_text('mine')
    with pytest.raises(fetch.FetchError, match='holds 1 entries no fetch '
                       r'put there \(notes.txt\)'):
        fetch_release('ccp', ours, from_path=archive)
    assert (ours / 'notes.txt').read_text() == 'mine'
    # A user's file named as Fashionista's release: not a download to
    # resume or remove, and no request is made.
    _, base = server
    requests = len(_RangeHandler.requests)
    user = tmp_path / 'f'
    user.mkdir()
    (user / 'fashionista-v1.0.mat').write_text('my own file')
    result = _fetch_cli('fashionista', '--out', str(user), '--url',
                        f'{base}/f.mat')
    assert result.returncode == 2
    assert 'is left as it is' in result.stderr
    assert (user / 'fashionista-v1.0.mat').read_text() == 'my own file'
    assert len(_RangeHandler.requests) == requests
    file_out = tmp_path / 'a_file'
    file_out.write_text('x')
    with pytest.raises(fetch.FetchError, match='a file, not a folder'):
        fetch_release('ccp', file_out, from_path=archive)
