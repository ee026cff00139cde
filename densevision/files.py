"""Writing files safely: the one atomic writer, output planning and writability checks.

Outputs go through :func:`atomic_write` (a file) or :func:`atomic_write_dir` (a folder, such as an exported
SavedModel): the content is written to a hidden temporary file or folder next to the destination
(``.<name>.tmp-XXXXXXXX<suffix>``) and renamed over it, so a reader sees the old output or the new one, never half
of one; the temporary is removed on any exception, ``KeyboardInterrupt`` included. Only a hard kill (``kill -9``,
power loss) can leave one behind: :func:`remove_stale_temp_files` recognises and removes them (the trainer does so
when resuming).

Tools plan their outputs before doing any work (:func:`plan_outputs`): two inputs that would write the same file,
an existing file without ``overwrite``, an output path that is a folder or lies under a file, and a folder that
cannot be written are all refused up front with an :class:`~densevision.errors.OutputError` naming the path.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from densevision.errors import OutputError

PathLike = Union[str, os.PathLike]

#: the marker in temporary file names: ``.<name>.tmp-<8 random characters><suffix>``
TEMP_MARKER = ".tmp-"
_TEMP_NAME = re.compile(r"^\..+\.tmp-[a-z0-9_]{8}")
# errors of writing (not of reading a source inside ``write_fn``)
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO}

# Files made by mkstemp are private (0600); finished outputs get the permissions a plain open() would give.
_UMASK = os.umask(0)
os.umask(_UMASK)


def cache_root() -> Path:
    """densevision's cache folder: ``$DENSEVISION_CACHE`` or ``~/.cache/densevision`` (not created here)."""
    root = os.environ.get("DENSEVISION_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "densevision")
    return Path(root)


def describe_os_error(error: OSError) -> str:
    """A short reason for an OS error: ``"the disk is full"``, ``"permission denied"``, ..."""
    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EISDIR: "it is a folder",
        errno.ELOOP: "too many levels of symbolic links (a symlink loop)",
        errno.ENAMETOOLONG: "the name is too long",
    }
    return reasons.get(error.errno) or (error.strerror or str(error)).lower()


def _temp_suffix(name: str) -> str:
    """The suffix a temporary file keeps so writers that check it still work (``.keras``, ``.weights.h5``,
    ``.npz``, ``.png``): the last two dotted parts of the name, or the last one."""
    suffixes = Path(name).suffixes
    return "".join(suffixes[-2:]) if len(suffixes) >= 2 and len(suffixes[-2]) <= 9 else "".join(suffixes[-1:])


def is_temp_file(path: PathLike) -> bool:
    """Whether ``path`` is named like a temporary file of :func:`atomic_write`."""
    return bool(_TEMP_NAME.match(Path(path).name))


def atomic_write(path: PathLike, write_fn: Callable[[str], Any], fsync: bool = False) -> Path:
    """Write ``path`` through ``write_fn(tmp_path)`` and a rename: the destination is complete or untouched.

    Args:
        path: the destination; its folder is created if needed.
        write_fn: writes the whole content to the given temporary path (same folder, same suffix).
        fsync: flush the file and the folder to the disk before returning (checkpoints: survive a power cut).

    Returns:
        ``path`` as a Path.

    Raises:
        OutputError: the folder cannot be created or written, the disk is full, ``path`` is a folder; the
            message names ``path``. The temporary file is removed on this and on any other exception.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:100]}{TEMP_MARKER}", suffix=_temp_suffix(path.name),
                                   dir=path.parent)
        os.close(fd)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"cannot write {path}: {_blocking_file(path.parent)} is a file, not a folder") from None
    except OSError as error:
        raise OutputError(f"cannot write {path}: {describe_os_error(error)}") from error
    try:
        try:
            write_fn(tmp)
        except OSError as error:
            if error.errno in _WRITE_ERRNOS:  # other OS errors may come from reading a source: not ours
                raise OutputError(f"could not write {path}: {describe_os_error(error)}") from error
            raise
        try:
            os.chmod(tmp, 0o666 & ~_UMASK)
            if fsync:
                with open(tmp, "rb+") as handle:
                    os.fsync(handle.fileno())
            os.replace(tmp, path)
        except OSError as error:
            raise OutputError(f"could not write {path}: {describe_os_error(error)}") from error
        if fsync:
            _fsync_folder(path.parent)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    return path


def atomic_write_dir(path: PathLike, write_fn: Callable[[str], Any]) -> Path:
    """Write the folder ``path`` through ``write_fn(tmp_folder)`` and a rename: the destination is complete or
    untouched.

    The temporary folder is named as :func:`atomic_write`'s temporary files (``.<name>.tmp-XXXXXXXX``, so
    :func:`remove_stale_temp_files` finds one a hard kill left); an existing ``path`` is moved aside under such a
    name only once the new folder is complete, then removed.

    Raises:
        OutputError: the parent folder cannot be created or written, or the disk is full; the message names
            ``path``. The temporary folder is removed on this and on any other exception.
    """
    path = Path(path)
    tmp = _temp_folder(path)
    try:
        try:
            write_fn(str(tmp))
        except OSError as error:
            if error.errno in _WRITE_ERRNOS:
                raise OutputError(f"could not write {path}: {describe_os_error(error)}") from error
            raise
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp's folders are private; outputs get a plain mkdir's permissions
        aside = None
        if path.exists() or path.is_symlink():
            aside = _temp_folder(path)
            os.replace(path, aside / path.name)
        try:
            os.replace(tmp, path)
        except OSError:
            if aside is not None:  # put the old output back
                os.replace(aside / path.name, path)
            raise
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _temp_folder(path: Path) -> Path:
    """A new empty hidden folder next to ``path`` named like a temporary file (``.<name>.tmp-XXXXXXXX``)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{path.name[:100]}{TEMP_MARKER}", dir=path.parent))
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"cannot write {path}: {_blocking_file(path.parent)} is a file, not a folder") from None
    except OSError as error:
        raise OutputError(f"cannot write {path}: {describe_os_error(error)}") from error


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # some systems cannot open folders; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _blocking_file(folder: Path) -> Path:
    """The existing non-folder that keeps ``folder`` from being created (``folder`` itself or an ancestor)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return folder


def write_bytes(path: PathLike, data: bytes, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)

    return atomic_write(path, write, fsync=fsync)


def write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    return write_bytes(path, text.encode(encoding))


def to_json_compatible(value: Any) -> Any:
    """Numpy scalars/arrays -> Python, tuples/sets -> lists, paths -> strings, NaN/inf -> ``None`` (strict JSON
    has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): to_json_compatible(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json_compatible(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json_compatible(value.tolist())
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def write_json(path: PathLike, data: Any, indent: Optional[int] = 2) -> Path:
    """Write strict JSON atomically (NaN and infinities become ``null``)."""
    return write_text(path, json.dumps(to_json_compatible(data), indent=indent, allow_nan=False) + "\n")


def write_png(path: PathLike, array: np.ndarray) -> Path:
    """Write a PNG atomically: RGB uint8 ``(H, W, 3)``, RGBA ``(H, W, 4)``, or an ``(H, W)`` uint8/uint16 map.

    The image is encoded in memory first, so an array that cannot be encoded leaves no file at all.
    """
    import cv2

    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] in (3, 4):
        array = cv2.cvtColor(array.astype(np.uint8), cv2.COLOR_RGB2BGR if array.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    elif array.ndim != 2 or array.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"write_png {path}: expected (H, W, 3|4) uint8 or (H, W) uint8/uint16, "
                         f"got {array.dtype} {array.shape}")
    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise OutputError(f"could not encode {path} as PNG ({array.dtype} {array.shape})")
    return write_bytes(path, encoded.tobytes())


def write_npz(path: PathLike, **arrays: np.ndarray) -> Path:
    """``np.savez_compressed`` atomically (``path`` should end in ``.npz``)."""
    return atomic_write(path, lambda tmp: np.savez_compressed(tmp, **arrays))


def copy_atomic(source: PathLike, destination: PathLike, fsync: bool = False) -> Path:
    """Copy ``source`` to ``destination`` atomically (a reader never sees a half-copied file)."""
    return atomic_write(destination, lambda tmp: shutil.copyfile(source, tmp), fsync=fsync)


def remove_stale_temp_files(folder: PathLike, recursive: bool = False) -> list[Path]:
    """Remove the temporary files (and folders) a hard-killed :func:`atomic_write` (:func:`atomic_write_dir`) left
    in ``folder``; return them.

    Call it only where no other process is writing (a run folder being resumed): a temporary file of a write in
    progress looks the same.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    candidates = folder.rglob(".*") if recursive else folder.glob(".*")
    removed = []
    for path in sorted(candidates):
        if not is_temp_file(path) or path.is_symlink():
            continue
        if path.is_file():
            try:
                path.unlink()
            except FileNotFoundError:
                continue
        elif path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            continue
        removed.append(path)
    return removed


# ------------------------------------------------------------------------------------------- checking outputs


def check_writable_dir(path: PathLike, what: str = "output folder", create: bool = False) -> Path:
    """Check that files can be written in ``path`` (created later, or now with ``create``).

    A folder that does not exist yet is fine if its nearest existing ancestor is a writable folder. The check
    writes and removes a hidden probe file, so it also holds for root and on read-only mounts.

    Raises:
        OutputError: ``path`` (or an ancestor) is a file, or the folder cannot be written; names ``path``.
    """
    path = Path(path)
    existing = path
    while not existing.exists() and not existing.is_symlink():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        if existing == path:
            raise OutputError(f"{what} {path} is a file, not a folder")
        raise OutputError(f"{what} {path} cannot be created: {existing} is a file, not a folder")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"{what} {path} cannot be created: {describe_os_error(error)}") from None
        existing = path
    try:
        # named as a temporary file, so remove_stale_temp_files finds a probe a kill left behind
        fd, probe = tempfile.mkstemp(prefix=f".densevision-probe{TEMP_MARKER}", dir=existing)
        os.close(fd)
        os.remove(probe)
    except OSError as error:
        where = "" if existing == path else f" (in {existing}, where it would be created)"
        # ENOENT inside a folder that exists: a virtual file system (/proc) that has no room for new files
        reason = ("no file can be created there (a system folder such as /proc, not a folder on a disk)"
                  if error.errno == errno.ENOENT else describe_os_error(error))
        raise OutputError(f"{what} {path} is not writable{where}: {reason}") from None
    return path


def check_writable_file(path: PathLike, what: str = "output file", overwrite: bool = True) -> Path:
    """Check that ``path`` can be written: not a folder, its folder writable, and (unless ``overwrite``) new.

    Raises:
        OutputError: naming ``path`` and what is wrong.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder; give a file name")
    if not overwrite and (path.exists() or path.is_symlink()):
        raise OutputError(f"{what} {path} already exists; pass --overwrite to replace it")
    check_writable_dir(path.parent if str(path.parent) else Path("."), what=f"the folder of {what} {path}")
    return path


def _summarize(items: Sequence[object], show: int = 5) -> str:
    listed = ", ".join(str(item) for item in items[:show])
    return listed + (f" (and {len(items) - show} more)" if len(items) > show else "")


@dataclass
class OutputPlan:
    """Every file a tool will write, checked before any work: see :func:`plan_outputs`.

    Attributes:
        outputs: ``{output path: what writes it}`` (the input file, or a description such as ``"results"``).
        overwrite: whether existing files may be replaced.
    """

    outputs: dict[Path, str] = field(default_factory=dict)
    overwrite: bool = False

    @property
    def paths(self) -> list[Path]:
        return list(self.outputs)

    @property
    def folders(self) -> list[Path]:
        """The distinct folders the outputs go to, in first-use order."""
        return list(dict.fromkeys(path.parent for path in self.outputs))

    def make_folders(self) -> None:
        """Create the output folders (call after the plan was accepted, before writing)."""
        for folder in self.folders:
            check_writable_dir(folder, create=True)


def _key(path: Path) -> str:
    return os.path.normcase(os.path.abspath(path))


def plan_outputs(outputs: Union[Mapping[PathLike, str], Iterable[tuple[str, PathLike]]], overwrite: bool = False,
                 hint: str = "choose another output folder") -> OutputPlan:
    """Check a tool's outputs before it does any work.

    Args:
        outputs: ``(owner, path)`` pairs (or ``{path: owner}``); ``owner`` says what writes the file (an input
            file's name), so a clash can name both inputs.
        overwrite: allow replacing existing files.
        hint: advice appended to the error about existing files.

    Returns:
        The :class:`OutputPlan` (``plan.make_folders()`` creates the folders).

    Raises:
        OutputError: two owners writing the same path; an output that is a folder; existing files (unless
            ``overwrite``); an output folder that is a file or not writable. One message names them.
    """
    pairs = ([(owner, path) for path, owner in outputs.items()] if isinstance(outputs, Mapping)
             else [(owner, path) for owner, path in outputs])
    planned: dict[Path, str] = {}
    seen: dict[str, tuple[str, Path]] = {}
    for owner, path in pairs:
        path = Path(path)
        key = _key(path)
        if key in seen:
            first_owner, _ = seen[key]
            what = (f"{first_owner} and {owner} would both write {path}" if first_owner != owner
                    else f"{owner} would write {path} twice")
            raise OutputError(f"output clash: {what}; rename one of them or write them to separate output folders")
        seen[key] = (str(owner), path)
        planned[path] = str(owner)
    folders_are_files = [path for path in planned if path.is_dir()]
    if folders_are_files:
        raise OutputError(f"output path(s) that are folders: {_summarize(folders_are_files)}")
    if not overwrite:
        existing = [path for path in planned if path.exists() or path.is_symlink()]
        if existing:
            raise OutputError(f"{len(existing)} output file(s) already exist: {_summarize(existing)}; pass "
                              f"--overwrite to replace them or {hint}")
    plan = OutputPlan(planned, overwrite)
    for folder in plan.folders:
        check_writable_dir(folder)
    return plan
