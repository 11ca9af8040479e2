import pytest

from tcodec import backends
from tcodec.backends import BackendEntry, get_backend
from tcodec.backends.jpeg import JpegBackend
from tcodec.format.container import BACKEND_CODES
from tcodec.errors import BackendError


def test_jpeg_is_found_by_name():
    assert isinstance(get_backend("jpeg"), JpegBackend)


def test_every_registered_backend_has_a_frozen_code():
    assert set(backends.REGISTRY) <= set(BACKEND_CODES)


def test_unknown_backend_lists_the_available_ones():
    with pytest.raises(BackendError, match="unknown backend 'webp' \\(available: jpeg"):
        get_backend("webp")


def test_missing_dependency_says_what_to_install(monkeypatch):
    monkeypatch.setitem(backends.REGISTRY, "fancy", BackendEntry("nowhere:Fancy", ("no_such_module_xyz",), "fancy"))
    with pytest.raises(BackendError, match=r"needs no_such_module_xyz: pip install 'tcodec\[fancy\]'"):
        get_backend("fancy")
