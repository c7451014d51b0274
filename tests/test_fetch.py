"""utils/fetch.py's parts that the dataset tools' tests (test_get_coco.py, test_get_cityscapes.py) do
not reach: plain progress lines under nohup, members that would leave the root, a missing file on the
server."""
import io
import sys

import pytest

from helpers import LocalServer, write_zip
from utils.fetch import Archive, ByteProgress, FetchError, FetchSettings, download, unpack

pytestmark = pytest.mark.usefixtures('local_network_only')


def test_progress_in_a_file_is_plain_lines_with_bytes_rate_and_time_left(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, 'stderr', log)  # not a terminal, as under nohup
    progress = ByteProgress('download x.zip', total=4_000_000, done=1_000_000, interval_s=0)
    progress.update(1_000_000)
    progress.close()
    lines = log.getvalue().splitlines()
    assert '\r' not in log.getvalue() and len(lines) == 2
    assert lines[0].startswith('download x.zip: 2.0 MB of 4.0 MB (50%), ') and lines[0].endswith(' s left')
    assert '/s' in lines[0] and lines[1].startswith('download x.zip: 2.0 MB of 4.0 MB on disk; 1.0 MB in ')


def test_member_leaving_the_root_is_refused(tmp_path):
    archive = write_zip(tmp_path / 'bad.zip', {'val2017/../../evil.txt': b'x', 'val2017/a.jpg': b'y'})
    spec = Archive('bad.zip', None, (('val2017/', 'images/val2017'),))
    settings = FetchSettings(root=tmp_path / 'root', archive_dir=tmp_path)
    with pytest.raises(FetchError, match='outside the data root'):
        unpack(spec, archive, settings)
    assert not (tmp_path / 'evil.txt').exists() and not (tmp_path / 'root' / 'images').exists()


def test_missing_file_on_the_server_is_one_line_naming_the_address(tmp_path):
    settings = FetchSettings(root=tmp_path, archive_dir=tmp_path, retries=0, retry_wait_s=0)
    with LocalServer(tmp_path) as server:
        with pytest.raises(FetchError) as info:
            download(server.url + 'nothing.zip', tmp_path / 'nothing.zip', settings)
    message = str(info.value)
    assert '\n' not in message and server.url + 'nothing.zip' in message and 'HTTP 404' in message
    assert '--base_url' in message
