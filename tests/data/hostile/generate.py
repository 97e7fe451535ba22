#!/usr/bin/env python3
"""Writes the hostile request corpus (tests/data/hostile/cases/*) that
tests/hostile_requests.rs sends to the webhook. Run from anywhere; it rewrites the files
in place. Expected answers live in manifest.json, written by hand: this script
only makes the bodies, so a changed answer shows up as a test failure, not as a
silently regenerated expectation.

Bodies too large to keep in git (over ~64 KiB) are not written here;
tests/hostile_requests.rs builds them from a `generate` entry in the manifest.
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(HERE, "cases")

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
SECURE = f"{ECR}/team/secure:1"  # KMS, customer key, rotation on
PLAIN = f"{ECR}/team/plain:1"  # AES256
DIGEST = "sha256:" + "a" * 64


def review(namespace="regulated", kind="Pod", group="", operation="CREATE",
           obj=None, old=None, uid="hostile", sub_resource=None, dry_run=False,
           spec=None, image=SECURE):
    if obj is None:
        if spec is None:
            spec = {"containers": [{"name": "app", "image": image}]}
        obj = {"apiVersion": "v1", "kind": kind,
               "metadata": {"name": "x", "namespace": namespace}, "spec": spec}
    gvk = {"group": group, "version": "v1", "kind": kind}
    resource = kind.lower() + "s"
    gvr = {"group": group, "version": "v1", "resource": resource}
    request = {
        "uid": uid, "kind": gvk, "resource": gvr, "requestKind": gvk,
        "requestResource": gvr, "name": "x", "namespace": namespace,
        "operation": operation, "userInfo": {"username": "mallory"},
        "object": obj, "oldObject": old, "dryRun": dry_run,
    }
    if sub_resource is not None:
        request["subResource"] = sub_resource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": request}


def pod(image, namespace="regulated", **kw):
    return review(namespace=namespace, image=image, **kw)


def dump(value):
    return json.dumps(value).encode()


def cases():
    base = dump(pod(SECURE))
    c = {}
    # --- not an AdmissionReview at all: HTTP 400 -----------------------------
    c["body-empty"] = b""
    c["body-whitespace"] = b" \n\t "
    c["json-null"] = b"null"
    c["json-array"] = b"[]"
    c["json-string"] = b'"AdmissionReview"'
    c["json-number"] = b"42"
    c["json-empty-object"] = b"{}"
    c["json-truncated-head"] = b'{"apiVersion": "admission.k8s.io/v1", "kind": "Adm'
    c["json-truncated-half"] = base[: len(base) // 2]
    c["json-truncated-one-byte-short"] = base[:-1]
    c["json-trailing-garbage"] = base + b" garbage"
    c["json-two-documents"] = base + base
    c["json-comment"] = b"// hi\n" + base
    c["json-bom"] = b"\xef\xbb\xbf" + base
    c["json-nan"] = base.replace(b'"dryRun": false', b'"dryRun": NaN')
    c["invalid-utf8-in-string"] = base.replace(b'"mallory"', b'"mall\xff\xfeory"')
    c["invalid-utf8-lone-surrogate-escape"] = base.replace(b'"hostile"', b'"\\ud800"')
    # Strings in fields ecr-guard does not read (userInfo, labels, the rest of
    # the pod spec) are skipped without decoding their escapes: judged as usual.
    c["lone-surrogate-escape-in-unread-field"] = base.replace(b'"mallory"', b'"\\ud800"')
    c["nul-bytes"] = b"\x00" * 64
    c["deep-nesting-arrays"] = b"[" * 10000 + b"]" * 10000
    # 5,000 levels in a pod-spec field ecr-guard does not read: skipped without
    # recursion (serde_json ignores values iteratively), the images are judged.
    deep = b'{"a":' * 5000 + b"1" + b"}" * 5000
    c["deep-nesting-in-pod-spec"] = base.replace(
        b'"spec": {"containers"', b'"spec": {"x": ' + deep + b', "containers"')
    c["wrong-api-version"] = base.replace(b"admission.k8s.io/v1", b"admission.k8s.io/v1beta1", 1)
    c["wrong-kind"] = base.replace(b'"kind": "AdmissionReview"', b'"kind": "Pod"')
    r = pod(SECURE); del r["request"]
    c["no-request"] = dump(r)
    r = pod(SECURE); r["request"] = None
    c["request-null"] = dump(r)
    r = pod(SECURE); r["request"] = "please admit"
    c["request-a-string"] = dump(r)
    r = pod(SECURE); r["request"]["uid"] = 12345
    c["uid-a-number"] = dump(r)
    r = pod(SECURE); del r["request"]["uid"]
    c["uid-missing"] = dump(r)
    r = pod(SECURE); r["request"]["operation"] = "EXPLODE"
    c["operation-unknown"] = dump(r)
    r = pod(SECURE); r["request"]["kind"] = "Pod"
    c["request-kind-a-string"] = dump(r)
    r = pod(SECURE); r["request"]["object"] = "a pod, trust me"
    c["object-a-string"] = dump(r)
    r = pod(SECURE); r["request"]["dryRun"] = "yes"
    c["dry-run-a-string"] = dump(r)
    c["huge-number"] = base.replace(b'"dryRun": false', b'"dryRun": false, "x": 1e999')

    # --- readable reviews with broken pod specs: HTTP 200, denied ------------
    c["containers-null"] = dump(review(spec={"containers": None}))
    c["containers-a-string"] = dump(review(spec={"containers": "nginx"}))
    c["containers-an-object"] = dump(review(spec={"containers": {"name": "app", "image": PLAIN}}))
    c["spec-null"] = dump(review(spec=None, obj={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": None}))
    c["spec-missing"] = dump(review(obj={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}))
    c["image-a-number"] = dump(review(spec={"containers": [{"name": "app", "image": 42}]}))
    c["image-null"] = dump(review(spec={"containers": [{"name": "app", "image": None}]}))
    c["image-missing"] = dump(review(spec={"containers": [{"name": "app"}]}))
    c["container-name-null"] = dump(review(spec={"containers": [{"name": None, "image": PLAIN}]}))
    r = review(); r["request"]["object"] = None
    c["object-null-on-create"] = dump(r)
    c["deployment-template-missing"] = dump(review(kind="Deployment", group="apps", obj={
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"replicas": 1}}))
    c["cronjob-template-a-list"] = dump(review(kind="CronJob", group="batch", obj={
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "x"},
        "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": []}}}}))

    # --- images that must not slip through ------------------------------------
    c["image-empty"] = dump(pod(""))
    c["image-blank"] = dump(pod("   "))
    c["image-only-digest"] = dump(pod("@" + DIGEST))
    c["image-digest-without-at"] = dump(pod(DIGEST))
    c["image-bare-hex-id"] = dump(pod("a" * 64))
    c["image-uppercase-ecr-host-aes256"] = dump(pod(PLAIN.replace(ECR, ECR.upper())))
    c["image-mixed-case-ecr-host-aes256"] = dump(pod(PLAIN.replace("dkr.ecr", "DkR.eCr")))
    c["image-port-443-aes256"] = dump(pod(PLAIN.replace(ECR, ECR + ":443")))
    c["image-port-0443-uppercase-aes256"] = dump(pod(PLAIN.replace(ECR, ECR.upper() + ":0443")))
    c["image-uppercase-ecr-host-aes256-lenient"] = dump(pod(PLAIN.replace(ECR, ECR.upper()), namespace="lenient"))
    c["image-port-443-aes256-lenient"] = dump(pod(PLAIN.replace(ECR, ECR + ":443"), namespace="lenient"))
    c["image-fips-uppercase-aes256-lenient"] = dump(pod("123456789012.DKR.ECR-FIPS.US-EAST-1.AMAZONAWS.COM/team/plain:1", namespace="lenient"))
    c["image-uppercase-host-secure"] = dump(pod(SECURE.replace(ECR, ECR.upper() + ":443")))
    c["image-digest-only-ecr-aes256"] = dump(pod(f"{ECR}/team/plain@{DIGEST}"))
    c["image-tag-and-digest-ecr-aes256"] = dump(pod(f"{ECR}/team/plain:1@{DIGEST}"))
    c["image-cyrillic-lookalike-host"] = dump(pod(PLAIN.replace("amazonaws", "amazon\u0430ws")))
    c["image-cyrillic-lookalike-host-lenient"] = dump(pod(PLAIN.replace("amazonaws", "amazon\u0430ws"), namespace="lenient"))
    c["image-fullwidth-host"] = dump(pod(PLAIN.replace("ecr", "\uff45\uff43\uff52")))
    c["image-zero-width-space"] = dump(pod(PLAIN.replace("dkr", "d\u200bkr")))
    c["image-punycode-host-lenient"] = dump(pod("123456789012.dkr.ecr.us-east-1.xn--amazonws-8zf.com/team/plain:1", namespace="lenient"))
    c["image-suffix-lookalike-host-lenient"] = dump(pod(f"{ECR}.evil.example/team/plain:1", namespace="lenient"))
    c["image-trailing-dot-host-lenient"] = dump(pod(PLAIN.replace(ECR, ECR + "."), namespace="lenient"))
    c["image-two-ports-ecr-lenient"] = dump(pod(f"{ECR}:5000:443/team/plain:1", namespace="lenient"))
    c["image-userinfo-host"] = dump(pod(f"user@{ECR}/team/plain:1", namespace="lenient"))
    c["image-newline"] = dump(pod(PLAIN + "\nnginx"))
    c["image-tab-and-nul"] = dump(pod("\t" + PLAIN + "\u0000"))
    c["image-double-slash"] = dump(pod(f"{ECR}//team/plain:1"))
    c["image-dot-dot-path"] = dump(pod(f"{ECR}/team/../plain:1"))
    c["image-huge-string"] = dump(pod(ECR + "/" + "a" * 40000))
    c["image-non-ecr-regulated"] = dump(pod("nginx:1.27"))
    c["image-ecr-public-regulated"] = dump(pod("public.ecr.aws/nginx/nginx:1"))
    c["init-container-aes256"] = dump(review(spec={
        "initContainers": [{"name": "init", "image": PLAIN}],
        "containers": [{"name": "app", "image": SECURE}]}))
    c["ephemeral-container-aes256"] = dump(review(spec={
        "containers": [{"name": "app", "image": SECURE}],
        "ephemeralContainers": [{"name": "debug", "image": PLAIN}]}))
    c["image-volume-aes256"] = dump(review(spec={
        "containers": [{"name": "app", "image": SECURE}],
        "volumes": [{"name": "data", "image": {"reference": PLAIN}}]}))
    c["dry-run-request-aes256"] = dump(pod(PLAIN, dry_run=True))
    # The 255-character limit is on the path, not host + path; ECR's own name rules.
    c["image-ecr-repository-230-characters"] = dump(pod(f"{ECR}/team/{'a' * 225}:1"))
    c["image-ecr-repository-256-characters"] = dump(pod(f"{ECR}/team/{'a' * 251}:1"))
    c["image-ecr-repository-double-underscore"] = dump(pod(f"{ECR}/team/a__b:1"))
    c["image-tag-129-characters"] = dump(pod(f"{ECR}/team/secure:{'v' * 129}"))

    # --- placeholders: nothing to judge in a template, fail closed in a Pod ---
    def templated(kind, group, pod_spec):
        spec = {"template": {"spec": pod_spec}}
        if kind == "CronJob":
            spec = {"schedule": "* * * * *", "jobTemplate": {"spec": spec}}
        api = f"{group}/v1" if group else "v1"
        return review(kind=kind, group=group, obj={
            "apiVersion": api, "kind": kind, "metadata": {"name": "x"}, "spec": spec})
    placeholders = {
        "initContainers": [{"name": "init", "image": " "}],
        "containers": [{"name": "app", "image": " "}, {"name": "side", "image": "\t"}],
        "volumes": [{"name": "data", "image": {"reference": ""}},
                    {"name": "more", "image": {"reference": "  "}}]}
    c["deployment-image-placeholders"] = dump(templated("Deployment", "apps", placeholders))
    c["cronjob-image-placeholders"] = dump(templated("CronJob", "batch", placeholders))
    c["replicationcontroller-image-placeholders"] = dump(templated("ReplicationController", "", placeholders))
    c["deployment-image-placeholder-beside-aes256"] = dump(templated("Deployment", "apps", {
        "containers": [{"name": "app", "image": " "}, {"name": "side", "image": PLAIN}]}))
    c["pod-image-volume-reference-empty"] = dump(review(spec={
        "containers": [{"name": "app", "image": SECURE}],
        "volumes": [{"name": "data", "image": {"reference": ""}}]}))
    c["uid-long-unicode"] = dump(pod(SECURE, uid="\u00e9\u2603" * 2000))

    # --- none of our business: HTTP 200, allowed untouched -------------------
    r = review(operation="DELETE"); r["request"]["object"] = None
    c["delete-without-object"] = dump(r)
    c["subresource-status"] = dump(pod(PLAIN, sub_resource="status"))
    c["configmap"] = dump(review(kind="ConfigMap", obj={"apiVersion": "v1", "kind": "ConfigMap", "data": {"image": PLAIN}}))
    c["pod-in-unlabelled-namespace"] = dump(pod(PLAIN, namespace="elsewhere"))
    return c


def main():
    os.makedirs(CASES, exist_ok=True)
    for old in os.listdir(CASES):
        os.remove(os.path.join(CASES, old))
    for name, body in sorted(cases().items()):
        assert len(body) < 64 * 1024, name
        with open(os.path.join(CASES, name + ".json"), "wb") as f:
            f.write(body)


if __name__ == "__main__":
    main()
