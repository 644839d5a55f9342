from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from retouraanvraag.adapters.files import DirectoryPhotoStore
from retouraanvraag.errors import InvalidInput, InvalidPhoto, NotFound, PortUnavailable
from retouraanvraag.photos import validate_photo
from retouraanvraag.ports import PhotoStore
from retouraanvraag.testing import MemoryPhotoStore
from retouraanvraag.testing.photo_contract import PhotoStoreContract, sample_jpeg, sample_png


class TestDirectoryPhotoStoreContract(PhotoStoreContract):
    root: Path

    @pytest.fixture(autouse=True)
    def _root(self, tmp_path: Path) -> None:
        self.root = tmp_path / "photos"

    def make_store(self) -> PhotoStore:
        return DirectoryPhotoStore(self.root)


class TestMemoryPhotoStoreContract(PhotoStoreContract):
    def make_store(self) -> PhotoStore:
        return MemoryPhotoStore()


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_photos_are_stored_per_shop_under_generated_names(tmp_path: Path) -> None:
    store = DirectoryPhotoStore(tmp_path)
    photo = validate_photo(sample_jpeg(metadata=True))
    ref = store.put("shop-1", photo.data, photo.content_type)
    assert ref.key.endswith(".jpg")
    assert len(ref.key) == 32 + 4
    (path,) = all_files(tmp_path)
    assert path == tmp_path / "shop-1" / ref.key[:2] / ref.key
    assert path.read_bytes() == photo.data
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.root == tmp_path


@pytest.mark.parametrize(
    ("shop_id", "folder"),
    [
        ("..", "%2E%2E"),
        ("../../etc", "%2E%2E%2F%2E%2E%2Fetc"),
        ("/abs", "%2Fabs"),
        ("bol.com", "bol%2Ecom"),
        ("winkel ü", "winkel%20%C3%BC"),
        ("C:\\x", "C%3A%5Cx"),
    ],
)
def test_shop_ids_cannot_leave_the_root(tmp_path: Path, shop_id: str, folder: str) -> None:
    root = tmp_path / "root"
    store = DirectoryPhotoStore(root)
    ref = store.put(shop_id, sample_png(), "image/png")
    (path,) = all_files(root)
    assert path.relative_to(root).parts == (folder, ref.key[:2], ref.key)
    assert all_files(tmp_path) == [path]
    assert store.get(shop_id, ref.key) == sample_png()


def test_empty_or_overlong_shop_ids_are_refused_on_put_and_not_found_on_get(
    tmp_path: Path,
) -> None:
    store = DirectoryPhotoStore(tmp_path)
    for shop_id in ("", "ü" * 100):
        with pytest.raises(InvalidInput, match="shop_id"):
            store.put(shop_id, sample_png(), "image/png")
        with pytest.raises(NotFound):
            store.get(shop_id, "0" * 32 + ".png")
    assert all_files(tmp_path) == []


def test_an_unsupported_content_type_is_refused(tmp_path: Path) -> None:
    store = DirectoryPhotoStore(tmp_path)
    with pytest.raises(InvalidPhoto, match="image/gif"):
        store.put("shop-1", b"GIF89a", "image/gif")
    assert all_files(tmp_path) == []


def test_an_unwritable_root_is_unavailable_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = DirectoryPhotoStore(blocker / "photos")
    with pytest.raises(PortUnavailable, match="cannot be written"):
        store.put("shop-1", sample_png(), "image/png")


def test_a_failed_write_removes_its_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DirectoryPhotoStore(tmp_path)

    def broken_fsync(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(PortUnavailable, match="OSError"):
        store.put("shop-1", sample_png(), "image/png")
    assert all_files(tmp_path) == []


def test_an_unreadable_photo_is_unavailable(tmp_path: Path) -> None:
    store = DirectoryPhotoStore(tmp_path)
    ref = store.put("shop-1", sample_png(), "image/png")
    path = tmp_path / "shop-1" / ref.key[:2] / ref.key
    path.unlink()
    path.mkdir()  # reading a folder fails with an OSError other than "not found"
    with pytest.raises(PortUnavailable, match="cannot be read"):
        store.get("shop-1", ref.key)
