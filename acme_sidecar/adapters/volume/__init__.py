"""The certificate volume (DESIGN.md §4), one module per job; ``CertStore`` (``store``) is the
whole of it as the cycle sees it.

- ``store``: ``CertStore``, the volume's entry point (its lock, its preparation);
- ``files``: atomic, permission-correct writes that never follow a link;
- ``recovery``: finishing or rolling back a swap a crash interrupted;
- ``pem`` and ``certdir``: parsing, every file inside one guard;
- ``keys``: the account key and the certificate keys;
- ``ledgerfile``: ``acme/state.json``;
- ``backups``: backups, the archive and what is set aside;
- ``toppair``: the top-level ``cert.pem``/``key.pem`` and the admin's own pair.
"""

from acme_sidecar.adapters.volume.store import CertStore, VolumeBusy

__all__ = ["CertStore", "VolumeBusy"]
