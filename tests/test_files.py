"""utils/files.py: every output file is written whole or not at all, checked, and a failed write
is one WriteError naming the file, whatever raised it."""
import errno
import io

import pytest
from PIL import Image

from utils.files import WriteError, save_image, write_atomic, write_json_file


def _target(tmp_path):
    path = tmp_path / 'out.bin'
    path.write_bytes(b'the previous file')
    return path


def _left(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir())


def test_torch_s_runtime_error_raised_from_a_full_disk_names_the_file(tmp_path):
    """torch notices a failed write late ("unexpected pos"), raising while it handles the OSError."""
    path = _target(tmp_path)

    def write(handle):
        handle.write(b'part')
        try:
            raise OSError(errno.EFBIG, 'File too large')
        except OSError as exc:  # torch chains its RuntimeError to the OSError; the cause names the errno
            raise RuntimeError('[enforce fail at inline_container.cc:672] . unexpected pos 8 vs 4') from exc
    with pytest.raises(WriteError, match=r'could not write .*out\.bin \(File too large\).*free disk space'):
        write_atomic(path, write)
    assert path.read_bytes() == b'the previous file' and _left(tmp_path) == ['out.bin']


def test_a_bug_keeps_its_traceback(tmp_path):
    path = _target(tmp_path)
    with pytest.raises(ZeroDivisionError):
        write_atomic(path, lambda handle: 1 / 0)
    assert _left(tmp_path) == ['out.bin']


def test_an_image_that_does_not_decode_is_never_renamed_into_place(tmp_path, monkeypatch):
    """A writer that stops half way without an error (what left truncated overlays behind): the
    check decodes the file, finds it short, and the target keeps its previous content."""
    path = tmp_path / 'map.png'
    save_image(Image.new('L', (64, 48), 3), path)
    before = path.read_bytes()
    real_save = Image.Image.save

    def half_save(self, handle, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(self, buffer, *args, **kwargs)
        handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    monkeypatch.setattr(Image.Image, 'save', half_save)
    with pytest.raises(WriteError, match=r'map\.png \(the written image does not decode'):
        save_image(Image.new('L', (64, 48), 7), path)
    assert path.read_bytes() == before and _left(tmp_path) == ['map.png']


def test_json_is_parsed_back(tmp_path):
    write_json_file(tmp_path / 'a.json', {'x': [1, 2]})
    assert (tmp_path / 'a.json').read_text() == '{\n  "x": [\n    1,\n    2\n  ]\n}'
