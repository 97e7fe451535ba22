#!/usr/bin/env python3
"""make demo: ecr-guard as a real HTTPS webhook against a local ECR/KMS emulator.

1. starts the moto server (the ECR + KMS emulator) on a free loopback port and
   creates repositories and keys through the real AWS API;
2. starts `ecr-guard serve` with the example policies and namespace labels,
   pointed at the emulator (AWS_ENDPOINT_URL), with a generated certificate;
3. sends it AdmissionReviews, shaped like the ones a kube-apiserver sends, for
   several Pods and a Deployment over HTTPS, and prints what it answered;
4. stops everything it started.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
import uuid

import boto3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACCOUNT = "123456789012"
REGION = "us-east-1"
HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=30.0, ctx=None, expect=200):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2, context=ctx) as r:
                if r.status == expect:
                    return
        except Exception as e:  # not up yet
            last = e
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {url}: {last}")


def seed(endpoint):
    """Repositories of every kind the policies care about, created through the AWS API."""
    kw = dict(endpoint_url=endpoint, region_name=REGION, aws_access_key_id="demo", aws_secret_access_key="demo")
    ecr, kms = boto3.client("ecr", **kw), boto3.client("kms", **kw)

    rotating = kms.create_key(Description="payments CMK")["KeyMetadata"]
    kms.enable_key_rotation(KeyId=rotating["KeyId"])
    static = kms.create_key(Description="shop CMK without rotation")["KeyMetadata"]
    disabled = kms.create_key(Description="legacy CMK, disabled")["KeyMetadata"]
    kms.enable_key_rotation(KeyId=disabled["KeyId"])
    kms.disable_key(KeyId=disabled["KeyId"])  # moto needs the key id here, not the ARN

    def repo(name, **enc):
        args = {"repositoryName": name}
        if enc:
            args["encryptionConfiguration"] = enc
        ecr.create_repository(**args)

    repo("payments/ledger", encryptionType="KMS", kmsKey=rotating["Arn"])
    repo("payments/api")  # no configuration: AES256
    repo("payments/legacy", encryptionType="KMS", kmsKey=disabled["Arn"])
    repo("shop/frontend", encryptionType="KMS", kmsKey=static["Arn"])
    # KMS with the AWS-managed aws/ecr key. moto invents a key ARN its own KMS does
    # not know, so ecr-guard (rightly) reports it as a key it cannot describe.
    repo("shop/catalog", encryptionType="KMS")
    return {
        "payments/ledger": "KMS, customer key, rotation on",
        "payments/api": "AES256",
        "payments/legacy": "KMS, customer key DISABLED",
        "shop/frontend": "KMS, customer key, rotation off",
        "shop/catalog": "KMS, AWS-managed key (see note)",
    }


def pod_review(namespace, name, containers, operation="CREATE", dry_run=False):
    spec = {
        "containers": [
            {"name": c, "image": img, "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log"}
            for c, img in containers
        ],
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
    }
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    return review({"group": "", "version": "v1", "kind": "Pod"}, {"group": "", "version": "v1", "resource": "pods"},
                  namespace, name, obj, operation, dry_run)


def deployment_review(namespace, name, containers):
    obj = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": c, "image": i} for c, i in containers]}}},
    }
    return review({"group": "apps", "version": "v1", "kind": "Deployment"},
                  {"group": "apps", "version": "v1", "resource": "deployments"}, namespace, name, obj, "CREATE", False)


def review(kind, resource, namespace, name, obj, operation, dry_run):
    return {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()), "kind": kind, "resource": resource,
            "requestKind": kind, "requestResource": resource,
            "name": name, "namespace": namespace, "operation": operation,
            "userInfo": {"username": "demo-user", "groups": ["system:authenticated"]},
            "object": obj, "oldObject": None, "dryRun": dry_run,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }


def send(url, ctx, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=ctx, timeout=15) as r:
        return json.load(r)["response"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "debug", "ecr-guard"))
    args = ap.parse_args()
    if not os.path.exists(args.binary):
        raise SystemExit(f"{args.binary} not found: run `cargo build` first (make demo does)")

    work = tempfile.mkdtemp(prefix="ecr-guard-demo-")
    procs = []

    def stop():
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(work, ignore_errors=True)

    try:
        moto_port = free_port()
        endpoint = f"http://127.0.0.1:{moto_port}"
        print(f"==> ECR/KMS emulator (moto) on {endpoint}")
        procs.append(subprocess.Popen([os.path.join(ROOT, ".venv", "bin", "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_http(endpoint + "/moto-api/")
        repos = seed(endpoint)
        for name, what in repos.items():
            print(f"    {HOST}/{name:<18} {what}")

        port, admin = free_port(), free_port()
        ca = os.path.join(work, "ca.pem")
        examples = os.path.join(ROOT, "manifests", "examples")
        cmd = [args.binary, "serve", "--listen", f"127.0.0.1:{port}", "--metrics-listen", f"127.0.0.1:{admin}",
               "--write-ca", ca, "--namespaces-file", os.path.join(examples, "namespaces.yaml")]
        for f in ("regulated-require-cmk.yaml", "prod-require-kms.yaml", "staging-dry-run.yaml"):
            cmd += ["--policy-file", os.path.join(examples, f)]
        env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="demo", AWS_SECRET_ACCESS_KEY="demo",
                   AWS_REGION=REGION, ECR_GUARD_LOG_LEVEL="warn")
        print(f"==> ecr-guard serve on https://127.0.0.1:{port}/validate (admin http://127.0.0.1:{admin})")
        print("    policies: regulated-require-cmk (Enforce), prod-require-kms (Enforce),")
        print("              prod-warn-key-rotation (Warn), staging-dry-run (DryRun)")
        print("    namespaces: payments {compliance: regulated, env: prod}, shop {env: prod},")
        print("                staging {env: staging}, dev {}")
        log = open(os.path.join(work, "ecr-guard.log"), "w")
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
        wait_http(f"http://127.0.0.1:{admin}/readyz")
        ctx = ssl.create_default_context(cafile=ca)
        url = f"https://localhost:{port}/validate"

        e = lambda r, t="1.0": f"{HOST}/{r}:{t}"
        cases = [
            ("payments", "Pod/ledger", pod_review("payments", "ledger", [("ledger", e("payments/ledger"))])),
            ("payments", "Pod/api", pod_review("payments", "api", [("api", e("payments/api", "1.4"))])),
            ("payments", "Deployment/legacy", deployment_review("payments", "legacy", [("legacy", e("payments/legacy"))])),
            ("payments", "Pod/debug", pod_review("payments", "debug", [("ledger", e("payments/ledger")), ("shell", "busybox:1.36")])),
            ("shop", "Pod/frontend", pod_review("shop", "frontend", [("web", e("shop/frontend"))])),
            ("shop", "Pod/catalog", pod_review("shop", "catalog", [("catalog", e("shop/catalog"))])),
            ("staging", "Pod/api", pod_review("staging", "api", [("api", e("payments/api", "1.5-rc1"))])),
            ("staging", "Pod/api (dry-run)", pod_review("staging", "api", [("api", e("payments/api"))], dry_run=True)),
            ("dev", "Pod/anything", pod_review("dev", "anything", [("app", "nginx:1.27")])),
        ]
        print()
        print(f"{'NAMESPACE':<10} {'OBJECT':<20} {'DECISION':<9} WHY")
        print("-" * 142)
        for ns, what, body in cases:
            r = send(url, ctx, body)
            assert r["uid"] == body["request"]["uid"], "uid must be echoed"
            if not r["allowed"]:
                decision, detail = "DENIED", r["status"]["message"].splitlines()
            elif r.get("warnings"):
                decision, detail = "WARNED", r["warnings"]
            elif r.get("auditAnnotations"):
                decision = "DRY-RUN"
                detail = ["admitted; would have been denied:"] + json.loads(next(iter(r["auditAnnotations"].values())))
            else:
                decision, detail = "ALLOWED", ["no policy violated"]
            first = True
            for line in detail:
                for part in textwrap.wrap(line, 100, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False) or [""]:
                    print(f"{ns if first else '':<10} {what if first else '':<20} {decision if first else '':<9} {part}")
                    first = False
            print()
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as r:
            metrics = [l for l in r.read().decode().splitlines()
                       if l.startswith(("ecr_guard_admission_requests_total", "ecr_guard_aws_calls_total"))]
        print("==> a few metrics from /metrics")
        for l in metrics:
            print("    " + l)
        print()
        print("Note: moto (the emulator) does not model AWS-managed KMS keys: the aws/ecr key of a")
        print("KMS-default repository does not exist in its KMS, so shop/catalog shows as a key ecr-guard")
        print("cannot describe. On AWS, DescribeKey reports KeyManager=AWS and prod-require-kms admits it.")
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
