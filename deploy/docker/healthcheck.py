"""The image's HEALTHCHECK: exit 0 when this container's zero answers /health with 200,
else 1 (a container engine treats any other code as reserved).

The HTTP port comes from ZERO_HTTP_ADDR (default 6080), the variable `zero run` reads
too; a wildcard or empty host is probed on loopback. Standard library only: the image
has no curl."""

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    addr = os.environ.get("ZERO_HTTP_ADDR", "") or "0.0.0.0:6080"
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=2) as r:
            return 0 if r.status == 200 else 1
    except urllib.error.HTTPError as e:  # 503: running, not serving
        print(f"unhealthy: {e.code} {e.read(300).decode(errors='replace')}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"unhealthy: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
