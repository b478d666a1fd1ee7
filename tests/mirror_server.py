"""A loopback HTTP server standing in for the weight servers, with scripted misbehaviour."""
import collections
import http.server
import threading
import time


class MirrorServer:
    """Serves ``files[path] = bytes``; ``behaviour[path]`` may be '404', 'drop' (half the
    body, then close), 'stall' (never answer), 'slow' (the body over 3 s) or 'corrupt'
    (other bytes, same length)."""

    def __init__(self):
        self.files, self.behaviour = {}, {}
        self.requests = collections.Counter()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests[self.path] += 1
                mode = server.behaviour.get(self.path)
                body = server.files.get(self.path)
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

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if self._thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()
