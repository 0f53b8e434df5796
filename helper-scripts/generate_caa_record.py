#!/usr/bin/env python3
"""Print the CAA record that pins certificates to this sidecar's ACME account.

Usage: generate_caa_record.py [--account-key data/assets/ssl/acme/account.pem]
                              [--directory-url URL] [--ca-bundle FILE]

It looks the account up at the CA with the account key (an "only return existing" newAccount
request through the ``acme`` library: nothing is created) and prints
``issue 128 "<ca identity>;accounturi=<account URL>"``. Run it where acme-sidecar runs, e.g.
``docker compose exec acme python /opt/acme-sidecar/helper-scripts/generate_caa_record.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import requests
from acme import client, errors, messages
from josepy.jwa import ES256, ES384, RS256
from josepy.jwk import JWK, JWKEC

LE = "https://acme-v02.api.letsencrypt.org/directory"


def main() -> int:
    """Look the account up and print the record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--account-key", type=Path, default=Path("data/assets/ssl/acme/account.pem")
    )
    parser.add_argument("--directory-url", default=LE)
    parser.add_argument("--ca-bundle", type=Path)
    args = parser.parse_args()
    key = JWK.load(args.account_key.read_bytes())
    alg = RS256
    if isinstance(key, JWKEC):
        alg = ES384 if key.key.curve.name == "secp384r1" else ES256
    verify: bool | str = str(args.ca_bundle) if args.ca_bundle else True
    net = client.ClientNetwork(key, alg=alg, verify_ssl=verify)  # type: ignore[arg-type]
    directory = client.ClientV2.get_directory(args.directory_url, net)
    acme = client.ClientV2(directory, net)
    lookup = messages.NewRegistration(key=key.public_key(), only_return_existing=True)
    try:
        account = acme.new_account(lookup)
        uri = account.uri
    except errors.ConflictError as exc:  # the library reports "exists" this way
        uri = exc.location
    except (messages.Error, requests.RequestException) as exc:
        print(f"cannot look the account up: {exc}", file=sys.stderr)
        return 1
    identities = list(getattr(directory.meta, "caa_identities", None) or [])
    if not identities and "letsencrypt.org" in args.directory_url:
        identities = ["letsencrypt.org"]
    if not identities:
        print("the CA publishes no CAA identity; use its documented domain", file=sys.stderr)
        identities = ["<ca-domain>"]
    print("Use this as your CAA record:")
    for identity in identities:
        print(f'issue 128 "{identity};accounturi={uri}"')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
