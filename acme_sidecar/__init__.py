"""acme-sidecar: keeps the TLS certificates of a mail server stack valid over ACME.

The package reads as the flow of one cycle:
discover (names) -> validate (DNS, HTTP) -> plan (pure) -> issue (ACME) -> store (volume)
-> apply (Docker). ``cycle`` wires one pass, ``daemon`` repeats it, ``cli`` is the entry point.
"""

__version__ = "0.1.0"
