"""Implementation choices of the VMess cores (constructor arguments, never globals).

Every choice puts the same bytes on the wire; they differ only in speed. The
process picks one at start-up (``V2PY_PURE_PYTHON=1`` picks the pure-Python ones)
and the assembly hands it to every VMess proxy, which hands it to its cores.
"""

from __future__ import annotations

from dataclasses import dataclass

from v2py.protocol.vmess.body import DEFAULT_BODY_IMPL, BodyImpl, best_body_impl
from v2py.protocol.vmess.kdf import DEFAULT_KDF_IMPL, KdfImpl, best_kdf_impl

__all__ = ["DEFAULT_IMPL", "VmessImpl"]


@dataclass(frozen=True, slots=True, kw_only=True)
class VmessImpl:
    """How the body is sealed/opened, how the header KDF is computed, and whether a
    server scans AEAD AuthIDs in the C accelerator (when it is built)."""

    body: BodyImpl = DEFAULT_BODY_IMPL
    kdf: KdfImpl = DEFAULT_KDF_IMPL
    accelerated_auth: bool = True

    @classmethod
    def best(cls, *, accelerated: bool = True) -> VmessImpl:
        """The fastest choices this process has (no C accelerator unless ``accelerated``)."""
        return cls(
            body=best_body_impl(accelerated=accelerated),
            kdf=best_kdf_impl(accelerated=accelerated),
            accelerated_auth=accelerated,
        )


#: The fastest choices available (the C accelerator when it is built).
DEFAULT_IMPL = VmessImpl()
