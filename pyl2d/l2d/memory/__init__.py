"""The L2D item memory: the type that loads and checks it (:mod:`.item_memory`), its build,
resumable and data-parallel (:mod:`.build`), its one data file (:mod:`.datafile`), its
manifest format (:mod:`.manifest`) and the build lock (:mod:`.lock`). Imports
:mod:`pyl2d.l2d.data` and :mod:`pyl2d.l2d.model`."""
from pyl2d.l2d.data.prompts import data_fingerprint  # its home before the rooms split: still importable here
from pyl2d.l2d.memory.build import build_memory
from pyl2d.l2d.memory.item_memory import MANIFEST, ItemMemory, model_fingerprint
from pyl2d.l2d.memory.lock import MemoryBusyError
from pyl2d.l2d.memory.manifest import FORMAT_VERSION, MemoryFormatError

__all__ = ["FORMAT_VERSION", "MANIFEST", "ItemMemory", "MemoryBusyError", "MemoryFormatError", "build_memory",
           "data_fingerprint", "model_fingerprint"]
