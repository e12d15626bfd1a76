"""A minimal Kubernetes API stand-in that records the PATCH bodies kubectl sends.

Usage: capture_server.py LIVE_OBJECT.json OUT_DIR
Serves legacy discovery for v1 and apps/v1, GET of the one live object, and
writes each PATCH body to OUT_DIR/patch-N.json with its Content-Type. Prints
the port it listens on as the first line of stdout.
"""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

live = json.load(open(sys.argv[1]))
out = sys.argv[2]
count = 0

DISCOVERY = {
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
         "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}]},
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        {"name": "configmaps", "singularName": "configmap", "namespaced": True, "kind": "ConfigMap",
         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}]},
    "/apis/apps/v1": {"kind": "APIResourceList", "groupVersion": "apps/v1", "resources": [
        {"name": "deployments", "singularName": "deployment", "namespaced": True, "kind": "Deployment",
         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}]},
}
OBJECT = "/apis/apps/v1/namespaces/default/deployments/" + live["metadata"]["name"]


class Handler(BaseHTTPRequestHandler):
    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def not_found(self):
        self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})

    def do_GET(self):
        path = self.path.split("?")[0]
        if path in DISCOVERY:
            self.reply(200, DISCOVERY[path])
        elif path == OBJECT:
            self.reply(200, live)
        else:
            self.not_found()

    def do_PATCH(self):
        global count
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with open(os.path.join(out, "patch-%d.json" % count), "w") as f:
            json.dump({"contentType": self.headers.get("Content-Type"), "path": self.path,
                       "body": json.loads(body)}, f)
        count += 1
        self.reply(200, live)

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
