#!/usr/bin/env python3
"""Runs scim2-tester, a third-party RFC 7643/7644 compliance checker, against a SCIM endpoint.

    scripts/scim-check.py http://127.0.0.1:8081/scim/v2   (the token in $SCIM_TOKEN)

Every check runs: discovery (ServiceProviderConfig, ResourceTypes, Schemas), the misc checks,
and for Users creation, reads, lists, attributes and excludedAttributes, PUT, PATCH add,
replace and remove of every writable attribute, and DELETE. Groups are Roster's fixed roles:
the checker's Group checks begin by creating a group, which Roster refuses by design, so Groups
are checked by the discovery checks and by Roster's own tests (tests/tests/e2e/scim.rs).

Prints one line per check that did not succeed and a summary by status; exits 1 when any check
ends in ERROR or CRITICAL, or when none ran.
"""

import collections
import os
import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

FAILING = {Status.ERROR, Status.CRITICAL}


def main() -> int:
    if len(sys.argv) != 2 or "SCIM_TOKEN" not in os.environ:
        print(__doc__, file=sys.stderr)
        return 2
    base = sys.argv[1].rstrip("/")
    http = Client(
        base_url=base,
        headers={"Authorization": f"Bearer {os.environ['SCIM_TOKEN']}"},
        timeout=30,
    )
    results = check_server(SyncSCIMClient(http), resource_types=["User"])
    counts = collections.Counter(result.status.name for result in results)
    for result in results:
        if result.status not in (Status.SUCCESS, Status.COMPLIANT):
            where = f" [{result.resource_type}]" if result.resource_type else ""
            print(f"{result.status.name:<10} {result.title}{where}: {result.reason}")
    summary = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
    print(f"scim2-tester against {base}: {len(results)} checks: {summary}")
    if not results:
        return 1
    return 1 if any(result.status in FAILING for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
