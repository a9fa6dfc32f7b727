"""Signs a request as the official Backend.AI client does (HMAC-SHA256, client-wire.md §4).

Used by scripts/bench (header lines for wrk) and tests/hostile (the signing proxy in front of
schemathesis). As a program: ``bai_sign.py AK SK HOST PATH [METHOD] [CONTENT-TYPE]`` prints the
three header lines of a signed request; a signature stays valid for 15 minutes.
"""

import datetime
import hashlib
import hmac
import sys

API_VERSION = "v7.20230615"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def sign_headers(access_key, secret_key, method, path, host, content_type="text/plain", now=None):
    """The ``Date``, ``X-BackendAI-Version`` and ``Authorization`` headers for a request.

    ``path`` is the raw request target (path and query, undecoded); ``content_type`` the media
    type without parameters (``text/plain`` for requests without a body).
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    date = now.isoformat()
    to_sign = "\n".join([method.upper(), path, date, "host:" + host, "content-type:" + content_type.lower(),
                         "x-backendai-version:" + API_VERSION, EMPTY_SHA256])
    k1 = hmac.new(secret_key.encode(), now.strftime("%Y%m%d").encode(), hashlib.sha256).digest()
    k2 = hmac.new(k1, host.encode(), hashlib.sha256).digest()
    signature = hmac.new(k2, to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "Date": date,
        "X-BackendAI-Version": API_VERSION,
        "Authorization": "BackendAI signMethod=HMAC-SHA256, credential=%s:%s" % (access_key, signature),
    }


if __name__ == "__main__":
    ak, sk, host, path = sys.argv[1:5]
    method = sys.argv[5] if len(sys.argv) > 5 else "GET"
    ctype = sys.argv[6] if len(sys.argv) > 6 else "text/plain"
    for name, value in sign_headers(ak, sk, method, path, host, ctype).items():
        print("%s: %s" % (name, value))
