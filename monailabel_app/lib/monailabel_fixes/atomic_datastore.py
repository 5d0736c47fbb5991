"""MONAI Label's local datastore with checked names and files, and crash-safe writes.

:class:`monailabel.datastore.local.LocalDatastore` copies uploads with ``shutil.copy`` straight onto
the target (a crash mid-copy leaves a truncated label or image), writes ``datastore_v2.json`` in place
(a crash leaves a file the server cannot start from), and builds file names from the client's image ID
and label tag as given (``../../x`` writes outside the studies folder). This subclass:

- checks image IDs and label tags (:mod:`lib.monailabel_fixes.safe_paths`) and that every written path stays inside the
  datastore folder;
- checks an uploaded image or label is a readable 2D image of a known type, and a label has its
  image's size, before anything is written;
- writes images, labels and the datastore JSON atomically (:mod:`radvlsm.atomic_files`);
- re-reads ``datastore_v2.json`` under the file lock before changing it, so several server processes
  sharing one studies folder (``--workers``, replicas) do not drop each other's labels or image info.

:func:`store_label` and :func:`write_datastore_file` are shared with the DICOMweb datastore's local copy.

Bad input becomes HTTP 422 (404 for an unknown image) with the problem in words.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from filelock import FileLock
from monailabel.datastore.local import DataModel, ImageLabelModel, LocalDatastore, LocalDatastoreModel

from lib.monailabel_fixes.http_errors import client_errors, not_found
from lib.monailabel_fixes.safe_paths import check_inside, check_name
from radvlsm.atomic_files import atomic_copy, atomic_write_text
from radvlsm.data.validation import image_shape, validate_item
from radvlsm.errors import RadVLSMInputError

logger = logging.getLogger(__name__)


def reload_if_changed(store: LocalDatastore) -> None:
    """Re-read ``datastore_v2.json`` when another process wrote it since this one did (hold the file lock)."""
    path = store._datastore_config_path
    if os.path.exists(path) and os.stat(path).st_mtime != store._config_ts:
        with open(path) as f:
            model = LocalDatastoreModel.model_validate_json(f.read())
        model.base_path = store._datastore_path
        store._datastore = model
        store._config_ts = os.stat(path).st_mtime


def write_datastore_file(store: LocalDatastore) -> None:
    """Write ``datastore_v2.json`` atomically (hold the file lock; the server cannot start from a torn one)."""
    store._ignore_event_config = True
    text = json.dumps(store._datastore.model_dump(exclude={"base_path"}), indent=2, default=str)
    atomic_write_text(store._datastore_config_path, text)
    store._config_ts = os.stat(store._datastore_config_path).st_mtime


def update_datastore_file(store: LocalDatastore, lock: bool = True) -> None:
    """:func:`write_datastore_file` under the store's file lock (``lock=False``: the caller holds it)."""
    if lock:
        with FileLock(store._lock_file):
            write_datastore_file(store)
    else:
        write_datastore_file(store)


def store_label(
    store: LocalDatastore, image_id: str, label_filename: str, label_tag: str, info: dict, reload: bool = True
) -> str:
    """Copy a label to ``<studies>/labels/<tag>/<image_id><ext>`` and record it, atomically and by checked names.

    Args:
        store: a local datastore (or the DICOMweb one's local copy).
        image_id: the image (checked to be a plain name the datastore knows).
        label_filename: the label file.
        label_tag: the tag (checked to be a plain name).
        info: label info (``ts`` and ``name`` are added).
        reload: re-read the datastore JSON first when another process changed it (a shared studies folder).

    Raises:
        HTTPException: 404 for an unknown image; 422 for an unsafe ID or tag.
    """
    with client_errors("datastore label upload"):
        check_name(image_id, "image id")
        check_name(label_tag, "label tag")
        _, ext = store._to_id(os.path.basename(label_filename))
        folder = store._datastore.label_path(label_tag)
        name = store._filename(image_id, ext)
        dest = check_inside(os.path.join(folder, name), store._datastore_path, "label")
    with FileLock(store._lock_file):
        if reload:
            reload_if_changed(store)
        obj = store._datastore.objects.get(image_id)
        if obj is None:
            raise not_found(f"image {image_id!r} is not in the datastore")
        os.makedirs(folder, exist_ok=True)
        atomic_copy(label_filename, dest)
        obj.labels[label_tag] = DataModel(info={**(info or {}), "ts": int(time.time()), "name": name}, ext=ext)
        write_datastore_file(store)
    logger.info("label %s (tag %s) stored as %s", image_id, label_tag, dest)
    return image_id


class AtomicLocalDatastore(LocalDatastore):
    """A folder of images (labels under ``labels/<tag>/``) that refuses unsafe names and never half-writes.

    Args:
        datastore_path: the studies folder.
        extensions: file patterns of images (``*.png`` ...); uploads must end with one of them.
        **kwargs: the rest of :class:`LocalDatastore`'s arguments.
    """

    def __init__(self, datastore_path: str, extensions: Sequence[str], **kwargs: Any) -> None:
        super().__init__(datastore_path, extensions=list(extensions), **kwargs)
        self._suffixes = tuple(e.replace("*", "") for e in extensions)
        handler = getattr(self, "_handler", None)  # MONAI Label's file watcher (auto reload)
        if handler is not None:
            # an atomic write replaces datastore_v2.json by a rename, which MONAI Label's watcher (it reloads
            # on "modified" only) would miss: reload on a rename onto it, or its creation, too
            on_created = handler.on_created
            handler.on_moved = self._on_config_replaced
            handler.on_created = lambda event: self._on_config_replaced(event) or on_created(event)

    def _on_config_replaced(self, event: Any) -> None:
        """Re-read ``datastore_v2.json`` when another process replaced it (own writes are skipped by mtime)."""
        target = getattr(event, "dest_path", "") or event.src_path
        if os.path.realpath(target) == os.path.realpath(self._datastore_config_path):
            self._init_from_datastore_file()

    def _checked_extension(self, filename: str, what: str) -> str:
        _, ext = self._to_id(os.path.basename(filename))
        if not ext.lower().endswith(self._suffixes):
            raise RadVLSMInputError(f"file type {ext!r} is not accepted; expected one of {self._suffixes}", what)
        return ext

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        """Store an uploaded image as ``<studies>/<image_id><ext>`` (atomically).

        Raises:
            HTTPException: 422 for an unsafe ID, an unknown file type, or a file that is not a readable 2D image.
        """
        with client_errors("datastore image upload"):
            ext = self._checked_extension(image_filename, "image")
            image_id = check_name(image_id or self._to_id(os.path.basename(image_filename))[0], "image id")
            validate_item({"image": image_filename, "id": image_id}, check_pixels=True)
            name = self._filename(image_id, ext)
            dest = check_inside(os.path.join(self._datastore.image_path(), name), self._datastore_path, "image id")
            with FileLock(self._lock_file):
                reload_if_changed(self)
                atomic_copy(image_filename, dest)
                info = {**(image_info or {}), "ts": int(time.time()), "name": name}
                self._datastore.objects[image_id] = ImageLabelModel(image=DataModel(info=info, ext=ext))
                write_datastore_file(self)
        logger.info("image %s stored as %s", image_id, dest)
        return image_id

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        """Store a label as ``<studies>/labels/<tag>/<image_id><ext>`` (atomically: old or new, never partial).

        Raises:
            HTTPException: 404 for an unknown image; 422 for an unsafe ID or tag, an unknown file type, an
                unreadable label or one whose size differs from the image's.
        """
        with client_errors("datastore label upload"):
            check_name(image_id, "image id")
            check_name(label_tag, "label tag")
            obj = self._datastore.objects.get(image_id)
            if obj is None:
                raise not_found(f"image {image_id!r} is not in the datastore")
            self._checked_extension(label_filename, "label")
            label_hw = image_shape(label_filename, "label")
            image_hw = image_shape(self.get_image_uri(image_id), "image")
            if label_hw != image_hw:
                raise RadVLSMInputError(
                    f"label is {label_hw[0]}x{label_hw[1]} (HxW) but image {image_id} is {image_hw[0]}x{image_hw[1]}",
                    "label",
                )
            validate_item({"image": label_filename, "id": f"label of {image_id}"}, check_pixels=True)
        return store_label(self, image_id, label_filename, label_tag, label_info)

    def update_image_info(self, image_id: str, info: dict[str, Any]) -> None:
        """Merge ``info`` into the image's info (re-read under the lock: other processes may have written).

        Raises:
            HTTPException: 404 for an unknown image.
        """
        with FileLock(self._lock_file):
            reload_if_changed(self)
            obj = self._datastore.objects.get(image_id)
            if obj is None:
                raise not_found(f"image {image_id!r} is not in the datastore")
            obj.image.info.update(info)
            write_datastore_file(self)

    def _update_datastore_file(self, lock: bool = True) -> None:
        """Write ``datastore_v2.json`` atomically (MONAI Label's own callers: refresh, removals)."""
        update_datastore_file(self, lock)
