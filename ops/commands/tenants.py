"""Bootstrap a tenant and its owner (``just create-tenant NAME OWNER_EMAIL``)."""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import sys
import unicodedata

from models import accounts
from models.accounts import Owner, TenantInfo
from ops.passwords import hash_password


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    # Hangul-only names leave nothing; fall back to a random slug.
    return slug[:48] or f"academy-{secrets.token_hex(3)}"


async def create_tenant(
    name: str, owner_email: str, password: str | None = None, slug: str | None = None
) -> tuple[TenantInfo, Owner, str]:
    """Create the tenant and its owner. Returns the owner's password (generated if not given).

    Refuses (ValueError) if the slug is taken, so running it twice creates nothing twice.
    """
    password = password or secrets.token_urlsafe(12)
    tenant, owner = await accounts.create_tenant(
        name, slug or slugify(name), owner_email.strip().lower(), hash_password(password)
    )
    return tenant, owner, password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="just create-tenant", description=__doc__)
    parser.add_argument("name")
    parser.add_argument("owner_email")
    parser.add_argument("--slug")
    parser.add_argument("--password", help="default: a random one, printed once")
    args = parser.parse_args(argv)
    try:
        tenant, owner, password = asyncio.run(
            create_tenant(args.name, args.owner_email, args.password, args.slug)
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"tenant   {tenant.name} (slug {tenant.slug}, id {tenant.id})")
    print(f"owner    {owner.email}")
    print(f"password {password}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
