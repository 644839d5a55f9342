from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from retouraanvraag.adapters.files import DirectoryPhotoStore
from retouraanvraag.errors import InvalidInput, InvalidPhoto, NotFound, PortUnavailable
from retouraanvraag.model import PhotoRef
from retouraanvraag.photos import CONTENT_TYPES, validate_photo
from retouraanvraag.ports import PhotoStore
from retouraanvraag.testing import MemoryPhotoStore
from retouraanvraag.testing.photo_contract import (
    PhotoStoreContract,
    sample_jpeg,
    sample_png,
    sample_webp,
)


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


def test_put_flushes_the_photo_and_then_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[tuple[int, int]] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        info = os.fstat(fd)
        synced.append((info.st_dev, info.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    store = DirectoryPhotoStore(tmp_path)
    ref = store.put("shop-1", sample_png(), "image/png")
    path = tmp_path / "shop-1" / ref.key[:2] / ref.key
    identity = [(p.stat().st_dev, p.stat().st_ino) for p in (path, path.parent)]
    assert synced == identity


def test_delete_removes_the_file_and_keeps_the_folders(tmp_path: Path) -> None:
    store = DirectoryPhotoStore(tmp_path)
    ref = store.put("shop-1", sample_png(), "image/png")
    other = store.put("shop-1", sample_jpeg(), "image/jpeg")
    store.delete("shop-1", ref.key)
    assert all_files(tmp_path) == [tmp_path / "shop-1" / other.key[:2] / other.key]
    assert (tmp_path / "shop-1" / ref.key[:2]).is_dir()
    with pytest.raises(NotFound):
        store.get("shop-1", ref.key)


def test_delete_never_reaches_a_file_by_a_key_it_does_not_generate(tmp_path: Path) -> None:
    store = DirectoryPhotoStore(tmp_path)
    ref = store.put("shop-1", sample_png(), "image/png")
    path = tmp_path / "shop-1" / ref.key[:2] / ref.key
    sibling = path.with_name(ref.key + "\n")
    sibling.write_bytes(b"not a photo of ours")
    for shop_id, key in (("shop-1", ref.key + "\n"), ("", ref.key), ("shop-2", ref.key)):
        store.delete(shop_id, key)
    assert all_files(tmp_path) == sorted([path, sibling])
    with pytest.raises(NotFound):
        store.get("shop-1", ref.key + "\n")


def test_a_photo_that_cannot_be_removed_is_unavailable(tmp_path: Path) -> None:
    store = DirectoryPhotoStore(tmp_path)
    ref = store.put("shop-1", sample_png(), "image/png")
    path = tmp_path / "shop-1" / ref.key[:2] / ref.key
    path.unlink()
    path.mkdir()  # unlinking a folder fails with an OSError other than "not found"
    with pytest.raises(PortUnavailable, match=f"photo {ref.key} cannot be removed"):
        store.delete("shop-1", ref.key)


def test_both_stores_make_keys_of_the_same_shape(tmp_path: Path) -> None:
    for store in (DirectoryPhotoStore(tmp_path), MemoryPhotoStore()):
        keys = [
            store.put("shop-1", sample_jpeg(), "image/jpeg").key,
            store.put("shop-1", sample_png(), "image/png").key,
            store.put("shop-1", sample_webp(), "image/webp").key,
        ]
        assert all(re.fullmatch(r"[0-9a-f]{32}\.(jpg|png|webp)", key) for key in keys)
        assert [key.rsplit(".", 1)[1] for key in keys] == ["jpg", "png", "webp"]


def test_the_memory_store_refuses_what_the_directory_store_refuses(tmp_path: Path) -> None:
    for store in (DirectoryPhotoStore(tmp_path), MemoryPhotoStore()):
        with pytest.raises(InvalidPhoto, match="image/gif"):
            store.put("shop-1", b"GIF89a", "image/gif")
        with pytest.raises(InvalidInput, match="shop_id"):
            store.put("", sample_png(), "image/png")
    memory = MemoryPhotoStore()
    memory.put("shop-1", sample_png(), "image/png")
    memory.delete("shop-1", "no-such-photo.png")
    assert len(memory) == 1


class LenientStore(MemoryPhotoStore):
    """Accepts any content type, as the in-memory store once did."""

    def put(self, shop_id: str, data: bytes, content_type: str) -> PhotoRef:
        return super().put(
            shop_id, data, content_type if content_type in CONTENT_TYPES else "image/png"
        )


class ForgetfulStore(MemoryPhotoStore):
    """Deletes nothing."""

    def delete(self, shop_id: str, key: str) -> None:
        del shop_id, key


class CrossShopStore(MemoryPhotoStore):
    """Deletes a key in every shop."""

    def delete(self, shop_id: str, key: str) -> None:
        del shop_id
        for shop in ("shop-1", "shop-2"):
            super().delete(shop, key)


class FlakyStore(MemoryPhotoStore):
    """Fails every put but the first."""

    def __init__(self) -> None:
        super().__init__()
        self.puts = 0

    def put(self, shop_id: str, data: bytes, content_type: str) -> PhotoRef:
        self.puts += 1
        if self.puts > 1:
            raise PortUnavailable("try again")
        return super().put(shop_id, data, content_type)


@pytest.mark.parametrize(
    ("broken", "check", "problem"),
    [
        (LenientStore, "test_an_unsupported_content_type_is_refused", "did not raise"),
        (ForgetfulStore, "test_a_deleted_photo_is_not_found", "did not raise NotFound"),
        (CrossShopStore, "test_deleting_another_shops_key_leaves_the_photo", "photo"),
        (FlakyStore, "test_concurrent_puts_all_land_under_distinct_keys", "puts failed"),
    ],
)
def test_the_contract_catches_a_store_that_breaks_it(
    broken: type[MemoryPhotoStore], check: str, problem: str
) -> None:
    class Broken(PhotoStoreContract):
        def make_store(self) -> PhotoStore:
            return broken()

    with pytest.raises((AssertionError, NotFound), match=problem):
        getattr(Broken(), check)()
