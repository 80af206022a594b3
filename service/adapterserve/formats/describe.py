"""What GET /adapters shows of an adapter that is not in memory: read from its config files and the
safetensors headers, never by loading tensors, so listing a store costs a few small reads per adapter."""

from __future__ import annotations

import logging
from pathlib import Path

from ..adapters import kinds
from ..errors import AdapterServeError
from .header import read_header
from .registry import detect_format

log = logging.getLogger(__name__)
# Saved tensors the loaders skip: PEFT's copy of the untrained modules_to_save, and AdapterHub's second name
# for the pre-adapter LayerNorm (the same parameters registered twice).
UNUSED = (".original_module.", "adapter_norm_before.")
HOST_BYTES_PER_PARAMETER = 4  # loaded adapters are kept in float32 on the host


def count_parameters(folder: Path) -> int | None:
    """Parameters in the folder's safetensors files, from their headers; None if any weights are pickles
    (.bin), whose sizes cannot be known without unpickling them."""
    if any(folder.glob("*.bin")):
        return None
    total = 0
    for path in sorted(folder.glob("*.safetensors")):
        total += sum(e.numel for k, e in read_header(path).items() if not any(u in k for u in UNUSED))
    return total


def describe_folder(folder: Path) -> dict:
    """format, kind, task, labels, parameters and bytes (host memory once loaded), as far as the files tell;
    a folder that cannot be served gets a warning saying why instead (never an exception)."""
    try:
        fmt = detect_format(folder)
        meta: dict = {"format": fmt.name, **(fmt.describe(folder) if fmt.describe else {})}
        if "kind" in meta:
            kinds.get(meta["kind"])  # the listing names only registered kinds, as loaded adapters do
        params = count_parameters(folder)
        meta.update(parameters=params, bytes=None if params is None else params * HOST_BYTES_PER_PARAMETER)
        return meta
    except AdapterServeError as e:
        return {"warnings": [f"cannot be served: {e.message}"]}
    except FileNotFoundError:  # evicted from a download cache, or deleted, while we read: nothing to say
        return {}
    except Exception as e:  # a folder we cannot even describe must not break the listing
        log.warning("describing %s failed: %s: %s", folder, type(e).__name__, e)
        return {"warnings": [f"cannot be served: the folder could not be read ({type(e).__name__})"]}
