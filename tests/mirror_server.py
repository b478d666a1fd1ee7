"""A loopback HTTP server standing in for the weight servers, with scripted misbehaviour."""
import collections
import http.server
import threading
import time


class MirrorServer:
    """Serves ``files[path] = bytes``; ``behaviour[path]`` may be '404', 'drop' (half the
    body, then close), 'stall' (never answer), 'slow' (the body over 3 s), 'corrupt'
    (other bytes, same length), 'drip' (the body one byte every 0.1 s), 'drip-headers' (the
    status line itself one byte every 0.1 s) or 'oversize' (the body and as much again,
    announced as such) or 'no-length' (no Content-Length: the body until the connection
    closes) or 'hang' (the headers and 100 bytes of the body, then silence with the
    connection open until the test ends). ``redirects[path] = url`` answers with a 302 to
    ``url``."""

    def __init__(self, ssl_context=None):
        self.files, self.behaviour, self.redirects = {}, {}, {}
        self.stop_dripping = threading.Event()
        self.requests = collections.Counter()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests[self.path] += 1
                mode = server.behaviour.get(self.path)
                body = server.files.get(self.path)
                if self.path in server.redirects:
                    self.send_response(302)
                    self.send_header('Location', server.redirects[self.path])
                    self.send_header('Content-Length', '0')
                    self.end_headers()
                    return
                if mode in ('drip', 'drip-headers'):
                    self._drip(body if mode == 'drip' else None)
                    return
                if mode == 'hang':
                    self._hang(body)
                    return
                if mode == 'oversize':
                    body = body + body
                if mode == 'no-length':  # the body until the connection closes
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(body)
                    self.close_connection = True
                    return
                if mode == 'stall':
                    time.sleep(5)
                    return
                if body is None or mode == '404':
                    self.send_error(404)
                    return
                if mode == 'corrupt':
                    body = bytes(b ^ 0xFF for b in body[:64]) + body[64:]
                self.send_response(200)
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                if mode == 'slow':  # long enough for a second client to arrive meanwhile
                    step = len(body) // 10 + 1
                    for i in range(0, len(body), step):
                        self.wfile.write(body[i:i + step])
                        self.wfile.flush()
                        time.sleep(0.3)
                    return
                if mode == 'drop':
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def _drip(self, body):
                """Bytes trickle in forever (until the test ends): each read succeeds in
                time, so only an overall deadline stops the client."""
                if body is None:
                    data = b'HTTP/1.1 200 OK\r\n' + b'X-Padding: ' + b'a' * 10000
                else:
                    self.send_response(200)
                    self.send_header('Content-Length', str(len(body)))
                    self.end_headers()
                    self.wfile.flush()
                    data = body
                for i in range(len(data)):
                    if server.stop_dripping.wait(0.1):
                        return
                    try:
                        self.wfile.write(data[i:i + 1])
                        self.wfile.flush()
                    except OSError:
                        return

            def _hang(self, body):
                """A transfer that stalls mid-body: the client's read blocks, with no
                further byte to end it before the per-read timeout."""
                self.send_response(200)
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body[:100])
                self.wfile.flush()
                server.stop_dripping.wait()

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        scheme = 'http'
        if ssl_context is not None:
            self.httpd.socket = ssl_context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = 'https'
        self.url = f'{scheme}://127.0.0.1:{self.httpd.server_address[1]}'
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.stop_dripping.set()
        if self._thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()
