#!/usr/bin/env python3
"""Checks a Rampart assertion the way an upstream written in Python would:
PyJWT's PyJWKClient fetches the signing key named by the token's `kid` from
Rampart's JWKS, and the token must be an asymmetric signature (EdDSA, ES256
or RS256) with header typ `rampart-assertion+jwt`, unexpired, with the given
issuer and audience when named.

    verify_assertion.py JWKS_URL [ASSERTION] [--issuer ISS] [--audience AUD]

The assertion comes from the argument or, without one, from stdin. Exit 0
and the claims as JSON on stdout when valid; exit 1 and the reason on
stderr when not; exit 2 on bad usage.
"""

import argparse
import json
import sys

import jwt

ASYMMETRIC = ["EdDSA", "ES256", "RS256"]
TYP = "rampart-assertion+jwt"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jwks_url")
    parser.add_argument("assertion", nargs="?")
    parser.add_argument("--issuer")
    parser.add_argument("--audience")
    args = parser.parse_args()
    token = (args.assertion or sys.stdin.read()).strip()
    try:
        header = jwt.get_unverified_header(token)
        signing_key = jwt.PyJWKClient(args.jwks_url).get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            signing_key.key,
            algorithms=ASYMMETRIC,
            issuer=args.issuer,
            audience=args.audience,
            options={"require": ["exp", "iat", "sub"], "verify_aud": args.audience is not None},
        )
        # Checked after the signature, which covers the header too.
        if header.get("typ") != TYP:
            raise jwt.InvalidTokenError(f"typ is {header.get('typ')!r}, not {TYP!r}")
    except jwt.PyJWTError as error:
        print(f"invalid: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(json.dumps(claims))
    return 0


if __name__ == "__main__":
    sys.exit(main())
