"""Child process for the label-save crash test: saves a label with a slowed-down copy and waits to be killed.

Usage: ``python label_save_child.py STUDIES IMAGE_ID LABEL_FILE atomic|plain``. Every copy (``shutil.copyfile``
and ``shutil.copyfileobj``) writes 64 bytes at a time; after half the file it prints ``HALF`` and sleeps,
so the parent can SIGKILL it in the middle of writing the label.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "monailabel_app"))

CHUNK = 64


def slow_copyfileobj(src, dst, length: int = 0) -> None:
    data = src.read()
    for start in range(0, len(data), CHUNK):
        dst.write(data[start : start + CHUNK])
        dst.flush()
        if start >= len(data) // 2:
            print("HALF", flush=True)
            time.sleep(600)


def slow_copyfile(src, dst, *, follow_symlinks: bool = True):
    with open(src, "rb") as fsrc, open(dst, "wb") as fdst:
        slow_copyfileobj(fsrc, fdst)
    return dst


def main() -> None:
    from lib.datastores import IMAGE_PATTERNS
    from lib.monailabel_fixes.atomic_datastore import AtomicLocalDatastore
    from monailabel.datastore.local import LocalDatastore

    studies, image_id, label, kind = sys.argv[1:5]
    store = (
        AtomicLocalDatastore(studies, IMAGE_PATTERNS)
        if kind == "atomic"
        else LocalDatastore(studies, extensions=list(IMAGE_PATTERNS))
    )
    shutil.copyfileobj, shutil.copyfile = slow_copyfileobj, slow_copyfile
    store.save_label(image_id, label, "final", {})
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
