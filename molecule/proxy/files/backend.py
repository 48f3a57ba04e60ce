"""Test backend for the proxy scenario: answers which slot and port it is.

Usage: backend.py SLOT-PORT   (e.g. blue-18000; a slot named 'fail' answers 503 to everything)
Answers JSON: slot, port, method, path, the proxy headers it received, body length.
HTTP/1.1 with keep-alive, so nginx's upstream keepalive is exercised.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SLOT, PORT = sys.argv[1].rsplit('-', 1)
PORT = int(PORT)


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def _answer(self):
        length = int(self.headers.get('Content-Length') or 0)
        if length:
            self.rfile.read(length)
        status = 503 if SLOT == 'fail' else 200
        body = json.dumps({
            'slot': SLOT, 'port': PORT, 'method': self.command, 'path': self.path,
            'host': self.headers.get('Host'),
            'x_forwarded_for': self.headers.get('X-Forwarded-For'),
            'x_forwarded_proto': self.headers.get('X-Forwarded-Proto'),
            'x_real_ip': self.headers.get('X-Real-IP'),
            'connection': self.headers.get('Connection'),
            'body_len': length,
        }).encode() + b'\n'
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

    def log_message(self, *args):
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(('127.0.0.1', PORT), Handler).serve_forever()
