"""A signing reverse proxy for fuzzers: every request it receives is signed with one keypair
(tests/lib/bai_sign.py) and forwarded unchanged otherwise to the manager; the manager's answer
goes back as it is. Fuzzers then need no knowledge of the HMAC scheme.

Usage: sign_proxy.py LISTEN_PORT UPSTREAM_HOST:PORT ACCESS_KEY SECRET_KEY
Prints "ready" once listening. Requests to paths starting with /storage/ (token-authorized)
and /openapi.json are forwarded unsigned.
"""

import http.client
import http.server
import os
import socketserver
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import bai_sign  # noqa: E402

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length"}


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream = ""
    access_key = ""
    secret_key = ""

    def log_message(self, *args):  # quiet
        pass

    def _forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        unsigned = self.path.startswith("/storage/") or self.path.startswith("/openapi.json")
        replaced = set() if unsigned else {"date", "x-backendai-version", "authorization"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | replaced}
        if not unsigned:
            # The server signs the media type of Content-Type, or application/octet-stream
            # when the request has none (client-wire.md §4.2).
            ctype = (self.headers.get("Content-Type") or "application/octet-stream").split(";")[0].strip()
            headers.update(bai_sign.sign_headers(self.access_key, self.secret_key, self.command, self.path,
                                                 self.upstream, ctype))
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection(self.upstream, timeout=30)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except Exception as e:  # the manager dropped the connection: report it as a 502
            msg = ("proxy: the manager did not answer %s %s: %s" % (self.command, self.path, e)).encode()
            self.send_response(502)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        finally:
            conn.close()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP_BY_HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def __getattr__(self, name):
        # Every method (TRACE, PROPFIND, …) goes to the manager: it decides what to refuse.
        if name.startswith("do_"):
            return self._forward
        raise AttributeError(name)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    port, upstream, ak, sk = sys.argv[1:5]
    Proxy.upstream, Proxy.access_key, Proxy.secret_key = upstream, ak, sk
    server = Server(("127.0.0.1", int(port)), Proxy)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
