"""store/disk.py against store/base.py's contract: a file appears at its final path only on commit."""

from __future__ import annotations

import errno
import hashlib
import os
import tracemalloc

import pytest

from crawler.store import disk
from crawler.store.base import Store
from crawler.store.disk import DiskStore

pytestmark = pytest.mark.timeout(30)

REL = "images/000/000/7.png"


async def _write(store: Store, body: bytes):
    sink = store.sink(REL, "image/png")
    for at in range(0, len(body), 3):
        await sink.write(body[at:at + 3])
    return sink


@pytest.mark.parametrize("tmpfile", [True, False], ids=["o_tmpfile", "named_part"])
async def test_nothing_at_the_final_path_before_commit_and_nothing_left_after_abort(tmp_path, tmpfile):
    store = DiskStore(tmp_path)
    store._tmpfile = tmpfile and store._tmpfile
    await store.clear_leftovers()
    sink = await _write(store, b"first body")
    assert not (tmp_path / REL).exists()
    await sink.abort()
    assert not (tmp_path / REL).exists() and os.listdir(tmp_path / disk.PARTIAL_DIR) == []
    sink = await _write(store, b"second body")
    await sink.commit()
    assert (tmp_path / REL).read_bytes() == b"second body"
    assert os.listdir(tmp_path / disk.PARTIAL_DIR) == []
    await store.close()


async def test_digest_and_read_give_what_was_committed(tmp_path):
    store = DiskStore(tmp_path)
    body = os.urandom(3 * 2**20 + 5)  # more than one read chunk
    sink = await _write(store, body[:30])
    await sink.write(body[30:])
    await sink.commit()
    assert await store.digest(REL) == (hashlib.sha256(body).hexdigest(), len(body))
    assert await store.read(REL) == body
    assert await store.digest("images/000/000/8.png") is None
    with pytest.raises(OSError):
        await store.digest("images")  # a folder: unreadable, not missing
    await store.close()


async def test_leftover_named_parts_of_a_killed_run_are_cleared(tmp_path):
    store = DiskStore(tmp_path)
    (tmp_path / disk.PARTIAL_DIR).mkdir()
    (tmp_path / disk.PARTIAL_DIR / "9.png.part").write_bytes(b"half")
    assert await store.clear_leftovers() == 1 and os.listdir(tmp_path / disk.PARTIAL_DIR) == []


async def test_read_digest_is_none_for_an_unreadable_file_unless_strict(tmp_path):
    assert await disk.read_digest(tmp_path) is None
    with pytest.raises(IsADirectoryError):
        await disk.read_digest(tmp_path, strict=True)


# -- behaviours guarded for mutation testing ---------------------------------------------------------


class _Kernel:
    """Stands in for `os` in crawler.store.disk's namespace: every call is the real one, but descriptors
    are tracked (to prove none leak and none but the store's own are closed), and O_TMPFILE opens or links
    can be refused with the errno a filesystem without them gives."""

    def __init__(self, refuse_tmpfile: int | None = None, refuse_link: int | None = None) -> None:
        self.refuse_tmpfile, self.refuse_link = refuse_tmpfile, refuse_link
        self.open_fds: set[int] = set()
        self.foreign_closes: list[int] = []
        self.tmpfile_opens = 0
        self.made_dirs: list[str] = []

    def __getattr__(self, name):
        return getattr(os, name)

    def open(self, path, flags, mode=0o777, **kwargs):
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            self.tmpfile_opens += 1
            if self.refuse_tmpfile is not None:
                raise OSError(self.refuse_tmpfile, os.strerror(self.refuse_tmpfile), path)
        fd = os.open(path, flags, mode, **kwargs)
        self.open_fds.add(fd)
        return fd

    def close(self, fd):
        if fd not in self.open_fds:
            # Not the store's: recorded instead of closed, so a wrong close cannot break the test run.
            self.foreign_closes.append(fd)
            return
        self.open_fds.discard(fd)
        os.close(fd)

    def link(self, src, dst, **kwargs):
        if self.refuse_link is not None:
            raise OSError(self.refuse_link, os.strerror(self.refuse_link), src, dst)
        return os.link(src, dst, **kwargs)

    def makedirs(self, name, *args, **kwargs):
        self.made_dirs.append(name)
        return os.makedirs(name, *args, **kwargs)


@pytest.fixture
def kernel(monkeypatch):
    def install(**refusals) -> _Kernel:
        fake = _Kernel(**refusals)
        monkeypatch.setattr(disk, "os", fake)
        return fake
    return install


@pytest.fixture
def umask_022():
    # Modes are checked exactly: a fixed umask, so a wrong bit (0o645) is not masked away.
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def test_url_names_the_root_folder(tmp_path):
    """`url` is the folder the user gave: messages such as the downloader's DiskFull name it."""
    assert DiskStore(tmp_path).url == str(tmp_path)


@pytest.mark.parametrize("tmpfile", [True, False], ids=["o_tmpfile", "named_part"])
async def test_committed_files_are_readable_with_mode_0644(tmp_path, tmpfile, umask_022):
    """Files appear as 0644 (rw-r--r--) whichever way they were written: readable by a web server, not
    executable."""
    store = DiskStore(tmp_path)
    store._tmpfile = tmpfile and store._tmpfile
    await store.clear_leftovers()
    sink = await _write(store, b"body")
    await sink.commit()
    assert _mode(tmp_path / REL) == 0o644
    await store.close()


@pytest.mark.parametrize("tmpfile", [True, False], ids=["o_tmpfile", "named_part"])
async def test_a_leftover_at_the_final_path_is_replaced_on_commit(tmp_path, tmpfile, umask_022):
    """A file of a download never recorded, at the final path, is replaced by the committed body."""
    store = DiskStore(tmp_path)
    store._tmpfile = tmpfile and store._tmpfile
    await store.clear_leftovers()
    (tmp_path / REL).parent.mkdir(parents=True)
    (tmp_path / REL).write_bytes(b"stale half body of an unrecorded download")
    sink = await _write(store, b"new body")
    await sink.commit()
    assert (tmp_path / REL).read_bytes() == b"new body" and _mode(tmp_path / REL) == 0o644
    assert os.listdir(tmp_path / REL.rpartition("/")[0]) == ["7.png"]
    await store.close()


@pytest.mark.parametrize("refusal", [errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT],
                         ids=["eopnotsupp", "eisdir", "einval", "enoent"])
async def test_a_filesystem_without_o_tmpfile_uses_named_parts_from_then_on(tmp_path, kernel, refusal, umask_022):
    """Where the kernel refuses O_TMPFILE (EOPNOTSUPP: not on this filesystem; EISDIR/EINVAL: older
    kernels), downloads go through named `.partial/<name>.part` files, and O_TMPFILE is not tried again."""
    fake = kernel(refuse_tmpfile=refusal)
    store = DiskStore(tmp_path)
    store._tmpfile = True  # as on a kernel that has O_TMPFILE, whose filesystem here refuses it
    await store.clear_leftovers()
    for ident in (7, 8):
        sink = store.sink(f"images/000/000/{ident}.png", "image/png")
        assert os.listdir(tmp_path / disk.PARTIAL_DIR) == [f"{ident}.png.part"]
        await sink.write(b"body %d" % ident)
        assert not (tmp_path / f"images/000/000/{ident}.png").exists()
        await sink.commit()
        assert (tmp_path / f"images/000/000/{ident}.png").read_bytes() == b"body %d" % ident
        assert _mode(tmp_path / f"images/000/000/{ident}.png") == 0o644
    assert fake.tmpfile_opens == 1  # refused once: the second download did not ask again
    assert os.listdir(tmp_path / disk.PARTIAL_DIR) == [] and fake.open_fds == set()
    await store.close()


async def test_an_o_tmpfile_failure_other_than_unsupported_is_raised(tmp_path, kernel):
    """A real failure opening the file (here too many open files) is raised, not hidden by the fallback,
    and does not switch the store to named files."""
    fake = kernel(refuse_tmpfile=errno.EMFILE)
    store = DiskStore(tmp_path)
    store._tmpfile = True
    await store.clear_leftovers()
    with pytest.raises(OSError) as raised:
        store.sink(REL, "image/png")
    assert raised.value.errno == errno.EMFILE
    assert os.listdir(tmp_path / disk.PARTIAL_DIR) == []
    fake.refuse_tmpfile = None
    sink = await _write(store, b"body")
    assert os.listdir(tmp_path / disk.PARTIAL_DIR) == []  # still O_TMPFILE: no named file
    await sink.commit()
    assert (tmp_path / REL).read_bytes() == b"body" and fake.tmpfile_opens == 2
    await store.close()


@pytest.mark.parametrize("refusal", [errno.EXDEV, errno.EPERM, errno.ENOENT, errno.EOPNOTSUPP, errno.EACCES],
                         ids=["exdev", "eperm", "enoent", "eopnotsupp", "eacces"])
async def test_a_filesystem_that_cannot_link_o_tmpfile_files_uses_named_parts_from_then_on(
        tmp_path, kernel, refusal, umask_022):
    """When linkat cannot name the finished O_TMPFILE file, commit raises LinkUnsupported with the
    kernel's reason (the downloader retries), nothing appears at the final path, the downloader's abort
    after it is harmless, and the retry writes a named .part file that commits."""
    fake = kernel(refuse_link=refusal)
    store = DiskStore(tmp_path)
    store._tmpfile = True
    await store.clear_leftovers()
    sink = await _write(store, b"body")
    with pytest.raises(disk.LinkUnsupported) as raised:
        await sink.commit()
    assert str(raised.value) == os.strerror(refusal)  # the reason alone: the downloader adds the context
    assert not (tmp_path / REL).exists()
    await sink.abort()  # what the downloader does after any failed commit
    assert fake.foreign_closes == []
    sink = await _write(store, b"body")
    assert os.listdir(tmp_path / disk.PARTIAL_DIR) == ["7.png.part"]  # the retry: a named file
    await sink.commit()
    assert (tmp_path / REL).read_bytes() == b"body" and _mode(tmp_path / REL) == 0o644
    assert fake.tmpfile_opens == 1 and os.listdir(tmp_path / disk.PARTIAL_DIR) == []
    await store.close()
    assert fake.open_fds == set() and fake.foreign_closes == []


async def test_a_link_failure_other_than_unsupported_is_raised_as_it_is(tmp_path, kernel):
    """A real failure to link (here a full disk) stays the OSError it is, so the downloader can report
    DiskFull; it is not taken for an unsupported filesystem, and later downloads still use O_TMPFILE."""
    fake = kernel(refuse_link=errno.ENOSPC)
    store = DiskStore(tmp_path)
    store._tmpfile = True
    await store.clear_leftovers()
    sink = await _write(store, b"body")
    with pytest.raises(OSError) as raised:
        await sink.commit()
    assert raised.value.errno == errno.ENOSPC and not (tmp_path / REL).exists()
    await sink.abort()
    fake.refuse_link = None
    sink = await _write(store, b"body")
    assert os.listdir(tmp_path / disk.PARTIAL_DIR) == []
    await sink.commit()
    assert (tmp_path / REL).read_bytes() == b"body" and fake.tmpfile_opens == 2
    await store.close()


@pytest.mark.parametrize("tmpfile", [True, False], ids=["o_tmpfile", "named_part"])
async def test_abort_after_commit_and_a_second_close_release_nothing_twice(tmp_path, kernel, tmpfile):
    """Every descriptor a sink or the store opened is closed once, and only those: abort after a commit
    and a second close are harmless (no fd leaked, none of another owner closed, such as stdout)."""
    fake = kernel()
    store = DiskStore(tmp_path)
    store._tmpfile = tmpfile and store._tmpfile
    await store.clear_leftovers()
    sink = await _write(store, b"body")
    await sink.commit()
    await sink.abort()
    await sink.abort()
    await store.close()
    await store.close()
    assert fake.open_fds == set() and fake.foreign_closes == []
    assert (tmp_path / REL).read_bytes() == b"body"


async def test_named_parts_of_two_downloads_at_once_do_not_mix(tmp_path):
    """Two downloads written at the same time through named .part files each commit their own body."""
    store = DiskStore(tmp_path)
    store._tmpfile = False
    await store.clear_leftovers()
    first = store.sink("images/000/000/7.png", "image/png")
    second = store.sink("images/000/000/8.png", "image/png")
    for _ in range(3):  # interleaved, as concurrent downloads write
        await first.write(b"one ")
        await second.write(b"two ")
    await first.commit()
    await second.commit()
    assert (tmp_path / "images/000/000/7.png").read_bytes() == b"one " * 3
    assert (tmp_path / "images/000/000/8.png").read_bytes() == b"two " * 3
    assert os.listdir(tmp_path / disk.PARTIAL_DIR) == []


async def test_a_folder_made_by_another_store_or_process_is_written_into(tmp_path):
    """An existing shard folder (made by an earlier run, another process, or another store on the same
    root) is not an error."""
    (tmp_path / "images/000/000").mkdir(parents=True)
    stores = DiskStore(tmp_path), DiskStore(tmp_path)
    for ident, store in enumerate(stores, start=7):
        sink = store.sink(f"images/000/000/{ident}.png", "image/png")
        await sink.write(b"body")
        await sink.commit()
        await store.close()
    assert sorted(os.listdir(tmp_path / "images/000/000")) == ["7.png", "8.png"]


async def test_a_folder_is_made_once_per_store_not_once_per_file(tmp_path, kernel):
    """The hot path: a store asks for each folder once (a makedirs costs several syscalls), then
    remembers it."""
    fake = kernel()
    store = DiskStore(tmp_path)
    for ident in (7, 8, 9):
        sink = store.sink(f"images/000/000/{ident}.png", "image/png")
        await sink.commit()
    sink = store.sink("images/000/001/1007.png", "image/png")
    await sink.commit()
    assert fake.made_dirs == [f"{tmp_path}/images/000/000", f"{tmp_path}/images/000/001"]
    await store.close()


async def test_clear_leftovers_removes_every_file_and_symlink_and_counts_them(tmp_path):
    """Leftovers are named files and links: all are removed (a link itself, never followed: a looping
    or dangling one too, and the file a link points to stays), and the count is of all removed."""
    partial = tmp_path / disk.PARTIAL_DIR
    partial.mkdir()
    (partial / "7.png.part").write_bytes(b"half")
    (partial / "8.png.part").write_bytes(b"")
    (tmp_path / "kept.png").write_bytes(b"kept")
    (partial / "9.png.part").symlink_to(tmp_path / "kept.png")
    (partial / "10.png.part").symlink_to("10.png.part")  # a loop: following it fails with ELOOP
    (partial / "11.png.part").symlink_to("nowhere")
    assert await DiskStore(tmp_path).clear_leftovers() == 5
    assert os.listdir(partial) == [] and (tmp_path / "kept.png").read_bytes() == b"kept"


async def test_read_digest_reads_in_bounded_memory(tmp_path):
    """A file is hashed chunk by chunk: a video of gigabytes is never read into memory whole."""
    body = os.urandom(8 * 2**20)
    (tmp_path / "big.mp4").write_bytes(body)
    tracemalloc.start()
    try:
        assert await disk.read_digest(tmp_path / "big.mp4") == (hashlib.sha256(body).hexdigest(), len(body))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20  # about two 1 MiB chunks at once, not the 8 MiB file


async def test_a_mirror_folder_not_made_yet_is_made_with_its_parents(tmp_path):
    """The first run into `--out a/b/mirror` that does not exist yet: clearing leftovers makes the folder
    for named parts, parents included, and there is nothing to clear."""
    root = tmp_path / "a" / "b" / "mirror"
    store = DiskStore(root)
    assert await store.clear_leftovers() == 0
    assert (root / disk.PARTIAL_DIR).is_dir()
    assert await store.clear_leftovers() == 0  # and again, the folder being there


async def test_without_proc_mounted_named_parts_are_used_from_the_start(tmp_path, kernel, monkeypatch):
    """An O_TMPFILE file is named through /proc/self/fd; where /proc is not mounted (some containers) the
    store does not make files it could not name: named .part files from the first download."""
    fake = kernel()
    real_isdir = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda p: False if str(p) == "/proc/self/fd" else real_isdir(p))
    store = DiskStore(tmp_path)
    await store.clear_leftovers()
    sink = store.sink(REL, "image/png")
    await sink.write(b"body")
    await sink.commit()
    assert fake.tmpfile_opens == 0 and (tmp_path / REL).read_bytes() == b"body"
