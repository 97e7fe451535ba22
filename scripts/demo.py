#!/usr/bin/env python3
"""make demo: ecr-guard as a real HTTPS webhook against a local ECR/KMS emulator.

1. starts the local ECR/KMS emulator of scripts/emulator.py (moto, plus a proxy
   answering for the AWS-managed aws/ecr key, which moto cannot model) and
   creates repositories and keys through the real AWS API;
2. starts `ecr-guard serve` with the example policies and namespace labels,
   pointed at the emulator (AWS_ENDPOINT_URL), with a generated certificate;
3. sends it AdmissionReviews, shaped like the ones a kube-apiserver sends, for
   several Pods and a Deployment over HTTPS, and prints one row per object: the
   webhook's decision, each image with its repository's facts (once), each
   policy that applies and how it judged, and the hints; the per-policy detail
   and hints come from `ecr-guard check --output json` on the same objects, and
   the demo fails if its decisions differ from the webhook's;
4. schedules the deletion of payments' customer-managed key (a day after
   admission, say) and runs `ecr-guard audit --once --pods-file` on the Pods the
   webhook admitted, with the same policies and emulator, and prints its summary:
   the audit catches what admission could not have;
5. stops everything it started.

Every line fits 100 columns.
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

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import emulator as emu  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGION = emu.REGION
HOST = emu.HOST
WIDTH = 100
EXAMPLES = os.path.join(ROOT, "manifests", "examples")
POLICY_FILES = ("regulated-require-cmk.yaml", "prod-require-kms.yaml", "staging-dry-run.yaml")
NAMESPACES_FILE = os.path.join(EXAMPLES, "namespaces.yaml")


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


def load_policies():
    """[(name, mode, namespaceSelector)] of the example policies, in file order."""
    policies = []
    for f in POLICY_FILES:
        with open(os.path.join(EXAMPLES, f)) as fh:
            for doc in yaml.safe_load_all(fh):
                if doc:
                    spec = doc.get("spec", {})
                    policies.append((doc["metadata"]["name"], spec.get("mode", "Enforce"),
                                     spec.get("namespaceSelector") or {}))
    return policies


def load_namespaces():
    with open(NAMESPACES_FILE) as fh:
        items = yaml.safe_load(fh)["items"]
    return {i["metadata"]["name"]: i["metadata"].get("labels") or {} for i in items}


def selects(selector, labels):
    """A Kubernetes label selector (matchLabels, matchExpressions) against labels.

    Only to say which policies apply to a row; the verdicts are ecr-guard's."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        ok = {"In": key in labels and labels[key] in values,
              "NotIn": not (key in labels and labels[key] in values),
              "Exists": key in labels,
              "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def check_reports(binary, env, objects, work):
    """`ecr-guard check --output json` on the objects: [UnitReport] in input order."""
    path = os.path.join(work, "objects.yaml")
    with open(path, "w") as fh:
        yaml.safe_dump_all(objects, fh)
    cmd = [binary, "check", "--output", "json", "-f", path, "--namespaces-file", NAMESPACES_FILE]
    for f in POLICY_FILES:
        cmd += ["--policy-file", os.path.join(EXAMPLES, f)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    if out.returncode not in (0, 1):
        raise SystemExit(f"ecr-guard check failed ({out.returncode}):\n{out.stderr}")
    return json.loads(out.stdout)["results"]


def short_image(image):
    return image[len(HOST) + 1:] if image.startswith(HOST + "/") else image


def facts_of(image, repos, emulator):
    if not image.startswith(HOST + "/"):
        return "not in ECR"
    repo = short_image(image).rsplit(":", 1)[0]
    return repos.get(repo) or emulator.pull_through_facts(repo) or "no such repository in the emulator"


def requirement(violation):
    """`policy P allows only KMS` → `allows only KMS`, with the container when it matters."""
    message = violation["message"]
    container = ""
    if message.startswith('container "'):
        container = message.split('"', 2)[1]
    marker = f"policy {violation['policy']} "
    what = message.split("; " + marker, 1)[1] if ("; " + marker) in message else message
    return container, what


def audit_once(binary, env, admitted, work):
    """`ecr-guard audit --once` on the admitted Pods: (exit code, summary lines)."""
    pods = []
    for obj in admitted:
        pod = json.loads(json.dumps(obj))
        pod["metadata"]["uid"] = str(uuid.uuid5(uuid.NAMESPACE_URL, pod["metadata"]["name"]))
        pod["status"] = {"phase": "Running"}
        pods.append(pod)
    path = os.path.join(work, "pods.yaml")
    with open(path, "w") as fh:  # as `kubectl get pods -A -o yaml` prints them
        yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": pods,
                        "metadata": {"resourceVersion": ""}}, fh)
    cmd = [binary, "audit", "--once", "--pods-file", path, "--namespaces-file", NAMESPACES_FILE]
    for f in POLICY_FILES:
        cmd += ["--policy-file", os.path.join(EXAMPLES, f)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    if run.returncode not in (0, 1):
        raise SystemExit(f"ecr-guard audit failed ({run.returncode}):\n{run.stderr}{run.stdout}")
    return run.returncode, run.stdout.splitlines()


def out(line=""):
    assert len(line) <= WIDTH, f"demo line over {WIDTH} columns: {line!r}"
    print(line)


def field(name, text, first_indent=2):
    """`  name      text…` wrapped at WIDTH, continuation lines aligned under the text."""
    lead = " " * first_indent + f"{name:<10} "
    lines = textwrap.wrap(text, WIDTH, initial_indent=lead, subsequent_indent=" " * len(lead),
                          break_long_words=True, break_on_hyphens=False) or [lead.rstrip()]
    for line in lines:
        out(line)


def render(case, answer, report, repos, emulator, policies, namespaces):
    ns, obj, request, containers = case["namespace"], case["object"], case["request"], case["containers"]
    if not answer["allowed"]:
        decision = "DENIED"
    elif answer.get("warnings"):
        decision = "ALLOWED, WARNED"
    else:
        decision = "ALLOWED"
    out(f"{ns:<10} {obj:<20} {request:<46} {decision}")
    for name, image in containers:
        field("image", f"{name}: {short_image(image)}")
        field("facts", facts_of(image, repos, emulator))
    by_policy = {}
    for v in report["violations"]:
        by_policy.setdefault(v["policy"], []).append(v)
    labels = namespaces.get(ns, {})
    applying = [(n, m) for n, m, sel in policies if selects(sel, labels)]
    for v in report["violations"]:  # a policy the selector table missed: show it anyway
        if v["policy"] not in [n for n, _ in applying]:
            applying.append((v["policy"], v["mode"]))
    if not applying:
        field("policy", "none applies to this namespace")
    for name, mode in applying:
        found = by_policy.get(name, [])
        if not found:
            field("policy", f"{name} ({mode}): passes")
            continue
        verb = {"Enforce": "denies", "Warn": "warns", "DryRun": "would deny (recorded, admitted)"}
        several = len(containers) > 1  # name the container only when there is a choice
        details = "; ".join(f"{c}: {w}" if c and several else w for c, w in map(requirement, found))
        field("policy", f"{name} ({mode}) {verb.get(found[0]['mode'], found[0]['mode'])}: {details}")
    for note in report.get("warnings", []):
        field("note", note)
    for hint in report["hints"] or ["-"]:
        field("hint", hint)
    out()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "debug", "ecr-guard"))
    args = ap.parse_args()
    if not os.path.exists(args.binary):
        raise SystemExit(f"{args.binary} not found: run `cargo build` first (make demo does)")

    work = tempfile.mkdtemp(prefix="ecr-guard-demo-")
    procs = []
    emulator = emu.Emulator()

    def stop():
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        emulator.stop()
        shutil.rmtree(work, ignore_errors=True)

    try:
        emulator.start()
        out(f"==> ECR/KMS emulator on {emulator.endpoint}: moto, behind a proxy that answers KMS")
        out("    for the AWS-managed aws/ecr key the way AWS does (moto cannot model AWS-managed keys)")
        repos = emulator.seed()
        emulator.serve()
        out(f"    repositories in {HOST}:")
        for name, what in repos.items():
            out(f"      {name:<16} {what}")
        out("    pull-through cache rules (the proxy answers them and the creation templates for moto):")
        for prefix, what in emulator.pull_through.items():
            out(f"      {prefix + '/…':<16} {what}")

        port, admin = free_port(), free_port()
        ca = os.path.join(work, "ca.pem")
        cmd = [args.binary, "serve", "--listen", f"127.0.0.1:{port}", "--metrics-listen", f"127.0.0.1:{admin}",
               "--write-ca", ca, "--namespaces-file", NAMESPACES_FILE]
        for f in POLICY_FILES:
            cmd += ["--policy-file", os.path.join(EXAMPLES, f)]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECR_GUARD_"))}
        env.update(AWS_ENDPOINT_URL=emulator.endpoint, AWS_ACCESS_KEY_ID="demo", AWS_SECRET_ACCESS_KEY="demo",
                   AWS_REGION=REGION, ECR_GUARD_LOG_LEVEL="warn")
        out(f"==> ecr-guard serve on https://127.0.0.1:{port}/validate (admin http://127.0.0.1:{admin})")
        policies = load_policies()
        namespaces = load_namespaces()
        field("policies", ", ".join(f"{n} ({m})" for n, m, _ in policies), 4)
        field("namespaces", ", ".join(
            f"{n} {{{', '.join(f'{k}: {v}' for k, v in l.items())}}}" for n, l in namespaces.items()), 4)
        log = open(os.path.join(work, "ecr-guard.log"), "w")
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
        wait_http(f"http://127.0.0.1:{admin}/readyz")
        ctx = ssl.create_default_context(cafile=ca)
        url = f"https://localhost:{port}/validate"

        e = lambda r, t="1.0": f"{HOST}/{r}:{t}"  # noqa: E731
        server_dry_run = "CREATE, dryRun (kubectl --dry-run=server)"
        cases = [
            ("payments", "Pod", "ledger", "CREATE", [("ledger", e("payments/ledger"))]),
            ("payments", "Pod", "api", "CREATE", [("api", e("payments/api", "1.4"))]),
            ("payments", "Deployment", "legacy", "CREATE", [("legacy", e("payments/legacy"))]),
            ("payments", "Pod", "debug", "CREATE", [("ledger", e("payments/ledger")), ("shell", "busybox:1.36")]),
            ("shop", "Pod", "frontend", "CREATE", [("web", e("shop/frontend"))]),
            ("shop", "Pod", "catalog", "CREATE", [("catalog", e("shop/catalog"))]),
            ("staging", "Pod", "api", "CREATE", [("api", e("payments/api", "1.5-rc1"))]),
            ("staging", "Pod", "api", server_dry_run, [("api", e("payments/api"))]),
            ("dev", "Pod", "anything", "CREATE", [("app", "nginx:1.27")]),
            ("payments", "Pod", "nginx", "CREATE", [("nginx", e("docker-hub/library/nginx", "1.27"))]),
            ("shop", "Pod", "exporter", "CREATE", [("exporter", e("quay/prometheus/node-exporter", "v1.8"))]),
        ]
        rows = []
        for ns, kind, name, request, containers in cases:
            if kind == "Deployment":
                body = deployment_review(ns, name, containers)
            else:
                body = pod_review(ns, name, containers, dry_run=request == server_dry_run)
            rows.append({"namespace": ns, "object": f"{kind}/{name}", "request": request,
                         "containers": containers, "body": body})
        reports = check_reports(args.binary, env, [r["body"]["request"]["object"] for r in rows], work)
        assert len(reports) == len(rows), f"check judged {len(reports)} objects, the demo sent {len(rows)}"

        out()
        out("ECR images are shown without their registry host; `facts` is what the emulator holds.")
        out("A policy's mode (Enforce, Warn, DryRun) is the policy's; a dryRun request is kubectl's")
        out("(kubectl apply --dry-run=server): judged like any other, it only records no Event.")
        out()
        out(f"{'NAMESPACE':<10} {'OBJECT':<20} {'REQUEST':<46} DECISION")
        out("-" * WIDTH)
        allowed = []
        for row, report in zip(rows, reports):
            answer = send(url, ctx, row["body"])
            allowed.append(answer["allowed"])
            assert answer["uid"] == row["body"]["request"]["uid"], "uid must be echoed"
            webhook_denied = not answer["allowed"]
            assert webhook_denied == (report["decision"] == "denied"), (
                f"{row['object']}: the webhook and `ecr-guard check` disagree")
            render(row, answer, report, repos, emulator, policies, namespaces)
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as r:
            metrics = [line for line in r.read().decode().splitlines()
                       if line.startswith(("ecr_guard_admission_requests_total", "ecr_guard_aws_calls_total"))]
        out("==> a few metrics from /metrics")
        for line in metrics:
            for part in textwrap.wrap(line, WIDTH - 4, break_long_words=True):
                out("    " + part)
        out()
        filled = sorted({op for op, _ in emulator.filled})
        out(f"==> emulator gap filled: the proxy answered {len(emulator.filled)} KMS call(s) "
            f"({', '.join(filled) or 'none'})")
        out("    for shop/catalog's aws/ecr key with KeyManager AWS, as AWS does; moto alone cannot.")
        out(f"    and {emulator.pull_through_answers} pull-through cache rule and template call(s), "
            "which moto does not implement.")
        out()

        # Later: payments' CMK is scheduled for deletion. Admission judged the Pods
        # before; the audit re-judges the running ones with the facts of now.
        ecr, kms = emulator.clients()
        ledger = ecr.describe_repositories(repositoryNames=["payments/ledger"])["repositories"][0]
        key_id = ledger["encryptionConfiguration"]["kmsKey"].rsplit("/", 1)[-1]
        kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=15)
        admitted = [row["body"]["request"]["object"] for row, ok in zip(rows, allowed)
                    if ok and row["object"].startswith("Pod/") and row["request"] == "CREATE"]
        out("==> later, payments' CMK (payments/ledger's key) is scheduled for deletion in 15 days;")
        out(f"    ecr-guard audit --once --pods-file re-judges the {len(admitted)} admitted Pods")
        out("    (same policies and emulator; in a cluster it lists the Pods, writes PolicyReports):")
        out("    (registry host left out and key ARNs shortened to arn:…:key/ID here)")
        code, summary = audit_once(args.binary, env, admitted, work)
        account_arn = f"arn:aws:kms:{REGION}:{emu.ACCOUNT}:key/"
        for line in summary:
            line = line.replace(HOST + "/", "")
            line = line.replace(account_arn, "arn:…:key/")
            lead = "    " + " " * (len(line) - len(line.lstrip()))
            for part in textwrap.wrap(line.strip(), WIDTH, initial_indent=lead,
                                      subsequent_indent=lead + "  ", break_long_words=True,
                                      break_on_hyphens=False):
                out(part)
        out(f"    exit code {code}: {'an enforced policy or a key breaks pulls' if code else 'all pass'}")
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
