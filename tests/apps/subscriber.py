"""A minimal Dapr subscriber app (standard library only) that the tests run
as its own process so they can SIGKILL it: it subscribes programmatically
to one topic and appends each event's `data.n` to a file."""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, PUBSUB, TOPIC, OUT = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]


class App(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/dapr/subscribe":
            self.reply([{"pubsubname": PUBSUB, "topic": TOPIC, "route": "/in"}])
        else:
            self.reply({})

    def do_POST(self):
        event = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        with open(OUT, "a") as f:
            f.write(f"{event['data']['n']}\n")
        self.reply({"status": "SUCCESS"})


ThreadingHTTPServer(("127.0.0.1", PORT), App).serve_forever()
