#!/usr/bin/env python3
"""A local stand-in for ECR and KMS, with the example repositories in it.

    .venv/bin/python scripts/emulator.py [--port 5000]

starts the moto server (the ECR/KMS emulator from PyPI) on a private loopback
port, puts a small proxy in front of it on 127.0.0.1:PORT, creates the example
repositories and keys through the real AWS API (boto3), prints them, prints
`ready: http://127.0.0.1:PORT` (the endpoint answers from then on; a client
connecting earlier waits), and runs until interrupted (Ctrl-C, SIGTERM).
Point ecr-guard at it with AWS_ENDPOINT_URL=http://127.0.0.1:PORT (see the
README's "Running it without a cluster"); `make demo` uses it too.

The one thing the proxy does besides forwarding: moto cannot model an
AWS-managed KMS key. A repository created with encryptionType KMS and no key is
encrypted on AWS with the account's aws/ecr key, whose DescribeKey says
KeyManager AWS; moto instead names a key ARN its own KMS does not have, so
ecr-guard (rightly) could not describe it. The proxy answers DescribeKey and
GetKeyRotationStatus for that ARN the way KMS answers them for aws/ecr, and
counts every answer it fills in (`filled`), so nothing it invents goes unsaid.

moto implements neither DescribePullThroughCacheRules nor
DescribeRepositoryCreationTemplates, so the proxy answers both the way ECR does
(JSON shapes of the ECR API reference, pages of `maxResults` with a
`nextToken`), from the pull-through cache rules and repository creation
templates `seed()` sets up, and counts those answers too (`pull_through_answers`).

Hand-written rather than a library: a forwarding proxy with one rewritten
answer is ~60 lines of the standard library; mitmproxy and the like would be a
large dependency for it.
"""
import argparse
import http.client
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import boto3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"

# What each example repository is, in the words the demo and README use.
AES256 = "AES256"
KMS_CMK_ROTATING = "KMS, customer-managed key, rotation on"
KMS_CMK_DISABLED = "KMS, customer-managed key, key DISABLED"
KMS_CMK_STATIC = "KMS, customer-managed key, rotation off"
KMS_AWS_MANAGED = "KMS, AWS-managed key aws/ecr (answered by the proxy)"

ECR_TARGET = "AmazonEC2ContainerRegistry_V20150921."
RULES_TARGET = ECR_TARGET + "DescribePullThroughCacheRules"
TEMPLATES_TARGET = ECR_TARGET + "DescribeRepositoryCreationTemplates"

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate", "content-length", "host"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def aws_managed_key_metadata(arn):
    """DescribeKey's answer for the AWS-managed aws/ecr key, as KMS gives it."""
    return {
        "KeyMetadata": {
            "AWSAccountId": ACCOUNT,
            "KeyId": arn.rsplit("/", 1)[-1],
            "Arn": arn,
            "CreationDate": 1.7e9,
            "Enabled": True,
            "Description": "Default key that protects my ECR data when no other key is defined",
            "KeyUsage": "ENCRYPT_DECRYPT",
            "KeyState": "Enabled",
            "Origin": "AWS_KMS",
            "KeyManager": "AWS",
            "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
            "KeySpec": "SYMMETRIC_DEFAULT",
            "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
            "MultiRegion": False,
        }
    }


class Emulator:
    """moto + the proxy: `start()`, `seed()`, `serve()`, then use `endpoint`; `stop()` ends both."""

    def __init__(self, port=0):
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.moto = None
        self.moto_endpoint = None
        self.server = None
        self.serving = False
        self.aws_managed = set()  # key ARNs (and ids) answered as aws/ecr
        self.filled = []  # (operation, key ARN) of every answer the proxy made up
        self.rules = []  # pull-through cache rules, as DescribePullThroughCacheRules lists them
        self.templates = []  # repository creation templates, as DescribeRepositoryCreationTemplates lists them
        self.pull_through = {}  # rule prefix: what a repository it creates will be, in words
        self.pull_through_answers = 0  # answers to the two calls, made in moto's place
        self.lock = threading.Lock()

    def start(self):
        """Binds the endpoint first (a busy port fails before moto starts), then starts moto."""
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.server.daemon_threads = True
        moto_port = free_port()
        self.moto_endpoint = f"http://127.0.0.1:{moto_port}"
        self.moto = subprocess.Popen(
            [os.path.join(ROOT, ".venv", "bin", "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(self.moto_endpoint + "/moto-api/", timeout=2):
                    break
            except Exception as e:  # not up yet
                if self.moto.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise SystemExit(f"moto_server did not start on {self.moto_endpoint}: {e}")
                time.sleep(0.1)
        return self

    def serve(self):
        """Starts answering on the endpoint (connections made earlier wait in the backlog)."""
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.serving = True

    def stop(self):
        if self.server is not None:
            if self.serving:
                self.server.shutdown()
            self.server.server_close()
        if self.moto is not None and self.moto.poll() is None:
            self.moto.terminate()
            try:
                self.moto.wait(10)
            except subprocess.TimeoutExpired:
                self.moto.kill()

    def clients(self):
        kw = dict(endpoint_url=self.moto_endpoint, region_name=REGION,
                  aws_access_key_id="test", aws_secret_access_key="test")
        return boto3.client("ecr", **kw), boto3.client("kms", **kw)

    def seed(self):
        """Creates the example repositories; returns {repository name: what it is}."""
        ecr, kms = self.clients()
        rotating = kms.create_key(Description="payments CMK")["KeyMetadata"]
        kms.enable_key_rotation(KeyId=rotating["KeyId"])
        static = kms.create_key(Description="shop CMK without rotation")["KeyMetadata"]
        disabled = kms.create_key(Description="legacy CMK, disabled")["KeyMetadata"]
        kms.enable_key_rotation(KeyId=disabled["KeyId"])
        kms.disable_key(KeyId=disabled["KeyId"])  # moto needs the key id here, not the ARN

        def repo(name, **encryption):
            args = {"repositoryName": name}
            if encryption:
                args["encryptionConfiguration"] = encryption
            return ecr.create_repository(**args)["repository"]

        repo("payments/ledger", encryptionType="KMS", kmsKey=rotating["Arn"])
        repo("payments/api", encryptionType="AES256")
        repo("payments/legacy", encryptionType="KMS", kmsKey=disabled["Arn"])
        repo("shop/frontend", encryptionType="KMS", kmsKey=static["Arn"])
        catalog = repo("shop/catalog", encryptionType="KMS")  # no key: aws/ecr on AWS
        arn = catalog["encryptionConfiguration"]["kmsKey"]
        with self.lock:
            self.aws_managed.update({arn, arn.rsplit("/", 1)[-1]})
        self.seed_pull_through(rotating["Arn"])
        return {
            "payments/ledger": KMS_CMK_ROTATING,
            "payments/api": AES256,
            "payments/legacy": KMS_CMK_DISABLED,
            "shop/frontend": KMS_CMK_STATIC,
            "shop/catalog": KMS_AWS_MANAGED,
        }

    def seed_pull_through(self, key_arn):
        """Pull-through cache rules docker-hub and quay; templates docker-hub (KMS with a
        rotating customer-managed key) and ROOT (AES256), both applied to pull-through cache."""
        def rule(prefix, upstream):
            self.rules.append({"ecrRepositoryPrefix": prefix, "upstreamRegistryUrl": upstream,
                               "registryId": ACCOUNT, "createdAt": 1.7e9, "updatedAt": 1.7e9})

        def template(prefix, encryption):
            self.templates.append({"prefix": prefix, "description": f"pull-through cache: {prefix}",
                                   "encryptionConfiguration": encryption, "resourceTags": [],
                                   "imageTagMutability": "MUTABLE", "appliedFor": ["PULL_THROUGH_CACHE"],
                                   "createdAt": 1.7e9, "updatedAt": 1.7e9})

        rule("docker-hub", "registry-1.docker.io")
        rule("quay", "quay.io")
        template("docker-hub", {"encryptionType": "KMS", "kmsKey": key_arn})
        template("ROOT", {"encryptionType": "AES256"})
        self.pull_through = {
            "docker-hub": "not pulled yet; template docker-hub: " + KMS_CMK_ROTATING,
            "quay": "not pulled yet; template ROOT: " + AES256,
        }

    def pull_through_facts(self, repository):
        """What a repository a pull-through cache rule will create is, in words; None if no rule covers it."""
        for prefix, what in self.pull_through.items():
            if repository.startswith(prefix + "/"):
                return what
        return None

    def _pull_through(self, target, body):
        """DescribePullThroughCacheRules / DescribeRepositoryCreationTemplates, answered like ECR."""
        try:
            request = json.loads(body or b"{}")
            start = int(request.get("nextToken") or 0)
        except ValueError:
            return None
        size = int(request.get("maxResults") or 100)
        if target == RULES_TARGET:
            items_key = "pullThroughCacheRules"
            items = [r for r in self.rules if r["registryId"] == request.get("registryId", ACCOUNT)]
            answer = {}
        else:
            items_key, items, answer = "repositoryCreationTemplates", self.templates, {"registryId": ACCOUNT}
        answer[items_key] = items[start:start + size]
        if start + size < len(items):
            answer["nextToken"] = str(start + size)
        with self.lock:
            self.pull_through_answers += 1
        return answer

    def _fill(self, target, body):
        """The answer AWS would give where moto cannot, or None to forward."""
        if target in (RULES_TARGET, TEMPLATES_TARGET):
            return self._pull_through(target, body)
        if target not in ("TrentService.DescribeKey", "TrentService.GetKeyRotationStatus"):
            return None
        try:
            key = json.loads(body or b"{}").get("KeyId", "")
        except ValueError:
            return None
        with self.lock:
            if key not in self.aws_managed:
                return None
            arn = next(k for k in self.aws_managed if k.startswith("arn:") and k.endswith(key.rsplit("/", 1)[-1]))
            self.filled.append((target.split(".")[-1], arn))
        if target.endswith("DescribeKey"):
            return aws_managed_key_metadata(arn)
        # KMS rotates AWS-managed keys every year and says so.
        return {"KeyRotationEnabled": True, "KeyId": arn, "RotationPeriodInDays": 365}

    def _handler(self):
        emulator = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self, status, headers, body):
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _proxy(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                filled = emulator._fill(self.headers.get("X-Amz-Target", ""), body)
                if filled is not None:
                    self._answer(200, [("Content-Type", "application/x-amz-json-1.1")], json.dumps(filled).encode())
                    return
                upstream = urllib.parse.urlsplit(emulator.moto_endpoint)
                conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    response = conn.getresponse()
                    self._answer(response.status, response.getheaders(), response.read())
                finally:
                    conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _proxy

        return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=5000, help="loopback port of the endpoint (default 5000)")
    args = ap.parse_args()
    emulator = Emulator(args.port)
    try:
        emulator.start()
    except OSError as e:
        emulator.stop()
        raise SystemExit(f"cannot listen on 127.0.0.1:{args.port}: {e}")
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    try:
        for name, what in emulator.seed().items():
            print(f"{HOST}/{name:<16} {what}")
        for prefix, what in emulator.pull_through.items():
            print(f"{HOST}/{prefix + '/…':<16} pull-through cache, {what}")
        emulator.serve()
        print(f"ready: {emulator.endpoint}", flush=True)
        while not stopped.wait(1):
            pass
    finally:
        emulator.stop()
        if emulator.filled:
            print(f"the proxy answered {len(emulator.filled)} KMS call(s) for the AWS-managed key in moto's place",
                  flush=True)
        if emulator.pull_through_answers:
            print(f"the proxy answered {emulator.pull_through_answers} pull-through cache rule and template "
                  "call(s) in moto's place", flush=True)


if __name__ == "__main__":
    sys.exit(main())
