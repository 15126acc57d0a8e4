"""The deployment files, checked without Docker or a cluster.

What is checked, and against what:

- Docker Compose (``deploy/compose``): both files and their merge against the Compose
  Specification's JSON schema (``tests/data/crds/compose-spec.json``, the one Docker Compose
  v2.40.3 embeds); when a ``docker compose`` / ``docker-compose`` binary is on PATH, its own
  ``config`` output must agree with the merge done here.
- Kubernetes (``deploy/kubernetes``): each kustomization is rendered here in Python (the
  subset of Kustomize these files use, see ``render``); when ``kubectl`` is on PATH its
  ``kubectl kustomize`` output must equal that rendering, so the renderer cannot drift from
  Kustomize unnoticed. Core kinds are validated with kubernetes-validate (strict: unknown
  fields fail); KEDA, Strimzi and Prometheus Operator kinds against their CRDs' published
  OpenAPI schemas kept in ``tests/data/crds`` (see its README), made strict the way
  ``kubectl apply --validate=strict`` is: a field the schema does not declare fails.
- The application's own code decides what is right: topic names, partition counts and
  cleanup policies come from ``pipeline.runtime.topics.topic_specs``; environment variables must be
  ``Settings`` fields (or a sink's secret); commands must parse with the CLI's parser;
  consumer groups come from ``Settings.group_id``; the policies mounted must load.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any
from unittest import mock

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import SecretStr
from referencing import Registry, Resource

from pipeline.cli import build_parser
from pipeline.core.policy import Policy, load_policy, policy_from_data
from pipeline.runtime.settings import Settings
from pipeline.runtime.topics import topic_specs
from pipeline.sinks import sink_config
from pipeline.sinks.forward import sink_deadletter

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
COMPOSE_FILES = (COMPOSE_DIR / "compose.yaml", COMPOSE_DIR / "compose.override.yaml")
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
K8S = DEPLOY / "kubernetes"
KUSTOMIZATIONS = {
    "base": K8S / "base",
    "production": K8S / "overlays" / "production",
    "eventhubs-kafka": K8S / "overlays" / "eventhubs-kafka",
}
SCHEMAS = Path(__file__).parent / "data" / "crds"
K8S_VERSIONS = ("1.30", "1.37")
"""Oldest and newest Kubernetes minor versions the manifests are validated against."""

APP_IMAGE = "signin-risk"
METRICS = "signin-risk.io/metrics"
HUB_PARTITIONS = "signin-risk.io/eventhub-partitions"
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}
"""Annotation on the bridge's ScaledObject: the sign-in hub's partition count (set in Azure)."""

SETTINGS_ENV = {f"SIGNIN_RISK_{name.upper()}": name for name in Settings.model_fields}
SECRET_ENV = {
    env for env, name in SETTINGS_ENV.items() if Settings.model_fields[name].annotation is SecretStr
}
SINK_SECRET = re.compile(r"SIGNIN_RISK_SINK_(?P<sink>[A-Z0-9_]+)_(?P<kind>TOKEN|URL)")
"""``pipeline.sinks.sink_secret``: a sink's token or URL, by sink name."""
AZURE_ENV = {
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
}
"""What azure-identity's DefaultAzureCredential reads (the Entra ID alternative)."""
OTHER_SECRETS = {"AZURE_CLIENT_SECRET", "GF_SECURITY_ADMIN_PASSWORD"}
SECRET_TEXT = re.compile(r"SharedAccessKey=|AccountKey=|-----BEGIN|password=[^\s<$]", re.IGNORECASE)
"""What a connection string, a key or a password written into a file looks like."""
SECRET_PLACEHOLDER = "<from-secret>"


# --- small helpers -----------------------------------------------------------------------


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def settings_from(env: Mapping[str, str]) -> Settings:
    """``Settings`` exactly as a process with this environment (and no other SIGNIN_RISK_
    variable) would build them."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SIGNIN_RISK_")}
    with mock.patch.dict(os.environ, clean | dict(env), clear=True):
        return Settings()


parser = functools.cache(build_parser)


def parse_command(args: list[str]) -> Any:
    """The container's arguments as the CLI parses them (a wrong command fails here)."""
    try:
        return parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"`signin-risk {' '.join(args)}` is not a valid command")


def image_parts(image: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = None
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    return name, tag, digest or None


def is_app_image(image: str) -> bool:
    return image_parts(image)[0].rsplit("/", 1)[-1] == APP_IMAGE


def assert_pinned(image: str, where: str) -> None:
    _, tag, digest = image_parts(image)
    assert digest or tag, f"{where}: image {image!r} has no tag"
    assert tag != "latest", f"{where}: image {image!r} uses latest"


def sink_env_name(sink: str) -> str:
    return sink.upper().replace("-", "_")


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# --- a Kustomize subset in Python --------------------------------------------------------
#
# Supported, as Kustomize does it: `resources` (files and directories), `configMapGenerator`
# (files, options.labels; the name gets a content hash and references to it are renamed),
# `patches` (strategic merge, from `path` or inline `patch`, applied to `target` by
# kind/name/labelSelector or else to the resource of the patch's kind and name;
# `$patch: delete`), `namespace` and `images`. Strategic merge follows Kubernetes' merge
# keys for the lists of built-in kinds (containers and volumes by name, ports by
# containerPort...): patch items first, then the base's remaining items. Custom resources
# have no merge keys, so their lists are replaced whole. Anything else in a kustomization
# fails the test rather than being silently ignored.

KUSTOMIZATION_KEYS = {
    "apiVersion",
    "kind",
    "resources",
    "configMapGenerator",
    "patches",
    "namespace",
    "images",
}
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def is_builtin(doc: Mapping[str, Any]) -> bool:
    group = doc["apiVersion"].rpartition("/")[0]
    return group == "" or "." not in group or group.endswith(".k8s.io")


def strategic_merge(base: Any, patch: Any, builtin: bool) -> Any:
    if not (isinstance(base, dict) and isinstance(patch, dict)):
        return copy.deepcopy(patch)
    merged = dict(base)
    for key, value in patch.items():
        if key == "$patch":
            continue
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = strategic_merge(merged[key], value, builtin)
        elif builtin and key in MERGE_KEYS and isinstance(merged.get(key), list):
            merged[key] = merge_list(merged[key], value, MERGE_KEYS[key], builtin)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def merge_list(base: list[Any], patch: list[Any], key: str, builtin: bool) -> list[Any]:
    rest = {item[key]: item for item in base}
    merged = []
    for item in patch:
        if item.get("$patch") == "delete":
            rest.pop(item[key], None)
        elif item[key] in rest:
            merged.append(strategic_merge(rest.pop(item[key]), item, builtin))
        else:
            merged.append(copy.deepcopy(item))
    return merged + [item for item in base if item[key] in rest]


def content_hash(data: Mapping[str, str]) -> str:
    """A 10-character suffix that changes with the ConfigMap's content, in Kustomize's
    alphabet. Kustomize's own value is not reproduced (the comparison with kubectl
    normalises it): what matters is that the name changes with the policy, so the pods
    that mount it roll."""
    digest = hashlib.sha256(json.dumps(dict(data), sort_keys=True).encode()).hexdigest()
    return digest[:10].translate(str.maketrans("013ae", "ghkmt"))


def target_matches(doc: Mapping[str, Any], target: Mapping[str, Any]) -> bool:
    unknown = set(target) - {"kind", "name", "labelSelector"}
    assert not unknown, f"unsupported patch target fields {unknown}"
    if "kind" in target and doc["kind"] != target["kind"]:
        return False
    if "name" in target and doc["metadata"]["name"] != target["name"]:
        return False
    if "labelSelector" in target:
        wanted = dict(pair.split("=", 1) for pair in target["labelSelector"].split(","))
        return selects(wanted, doc["metadata"].get("labels", {}))
    return True


def rename_configmaps(docs: list[dict[str, Any]], names: Mapping[str, str]) -> None:
    for doc in docs:
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        for volume in pod.get("volumes", []):
            if "configMap" in volume and volume["configMap"]["name"] in names:
                volume["configMap"]["name"] = names[volume["configMap"]["name"]]
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef", {})
                if ref.get("name") in names:
                    ref["name"] = names[ref["name"]]
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("configMapKeyRef", {})
                if ref.get("name") in names:
                    ref["name"] = names[ref["name"]]


def set_images(docs: list[dict[str, Any]], images: list[dict[str, str]]) -> None:
    for doc in docs:
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            name, tag, _ = image_parts(container["image"])
            for entry in images:
                if entry["name"] == name:
                    new = entry.get("newName", name)
                    if "digest" in entry:
                        container["image"] = f"{new}@{entry['digest']}"
                    else:
                        tag = entry.get("newTag", tag)
                        container["image"] = f"{new}:{tag}" if tag else new


def render_dir(path: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((path / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(kustomization) - KUSTOMIZATION_KEYS
    assert not unknown, f"{path}: kustomization fields this test cannot render: {unknown}"
    docs: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        source = path / resource
        docs += render_dir(source) if source.is_dir() else load_docs(source)
    renamed = {}
    for generator in kustomization.get("configMapGenerator", []):
        assert set(generator) <= {"name", "files", "options"}, generator
        data = {Path(f).name: (path / f).read_text(encoding="utf-8") for f in generator["files"]}
        name = f"{generator['name']}-{content_hash(data)}"
        metadata: dict[str, Any] = {"name": name}
        if labels := generator.get("options", {}).get("labels"):
            metadata["labels"] = dict(labels)
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data})
        renamed[generator["name"]] = name
    rename_configmaps(docs, renamed)
    for patch in kustomization.get("patches", []):
        if "path" in patch:
            patch_docs = load_docs(path / patch["path"])
        else:
            patch_docs = [doc for doc in yaml.safe_load_all(patch["patch"]) if doc]
        for patch_doc in patch_docs:
            if "target" in patch:
                targets = [d for d in docs if target_matches(d, patch["target"])]
            else:
                targets = [
                    d
                    for d in docs
                    if d["kind"] == patch_doc["kind"]
                    and d["metadata"]["name"] == patch_doc["metadata"]["name"]
                ]
            assert targets, f"{path}: patch {patch} matches no resource"
            for doc in targets:
                index = next(i for i, d in enumerate(docs) if d is doc)
                if patch_doc.get("$patch") == "delete":
                    del docs[index]
                    continue
                patch_body = {k: v for k, v in patch_doc.items() if k != "metadata"}
                patch_body["metadata"] = {
                    k: v for k, v in patch_doc.get("metadata", {}).items() if k != "name"
                }
                docs[index] = strategic_merge(doc, patch_body, is_builtin(doc))
    if namespace := kustomization.get("namespace"):
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = namespace
    set_images(docs, kustomization.get("images", []))
    return docs


@functools.cache
def _render(name: str) -> str:
    return json.dumps(render_dir(KUSTOMIZATIONS[name]))


def render(name: str) -> list[dict[str, Any]]:
    """A fresh copy of the rendered kustomization (tests may not change each other's)."""
    docs: list[dict[str, Any]] = json.loads(_render(name))
    return docs


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def by_name(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"no single {kind} {name!r}"
    return found[0]


# --- Kubernetes containers: what each one runs and with what ------------------------------


class K8sContainer:
    """The signin-risk container of a Deployment: command, environment and mounts."""

    def __init__(self, deployment: dict[str, Any], docs: list[dict[str, Any]]) -> None:
        self.deployment = deployment
        self.name = deployment["metadata"]["name"]
        self.pod = deployment["spec"]["template"]["spec"]
        apps = [c for c in self.pod["containers"] if is_app_image(c["image"])]
        assert len(apps) == 1, f"{self.name}: one signin-risk container expected"
        self.container = apps[0]
        self.docs = docs
        assert "command" not in self.container, f"{self.name}: the image's entrypoint is the CLI"
        self.args = parse_command(list(self.container.get("args", [])))

    @property
    def env(self) -> dict[str, str]:
        """Literal values; a value from a Secret reads as a placeholder (it is set)."""
        env = {}
        for item in self.container.get("env", []):
            if "value" in item:
                env[item["name"]] = str(item["value"])
            else:
                assert "secretKeyRef" in item["valueFrom"], item
                env[item["name"]] = SECRET_PLACEHOLDER
        assert "envFrom" not in self.container, f"{self.name}: every variable is listed by name"
        return env

    @property
    def settings(self) -> Settings:
        return settings_from(self.env)

    def volume_of(self, path: str) -> tuple[dict[str, Any], dict[str, Any], PurePosixPath]:
        """The mount holding ``path``, its volume and the path inside the volume."""
        target = PurePosixPath(path)
        for mount in self.container.get("volumeMounts", []):
            root = PurePosixPath(mount["mountPath"])
            if target == root or root in target.parents:
                volume = next(v for v in self.pod["volumes"] if v["name"] == mount["name"])
                return mount, volume, target.relative_to(root)
        pytest.fail(f"{self.name}: nothing is mounted at {path}")

    def writable(self, path: str) -> bool:
        mount, volume, _ = self.volume_of(path)
        return not mount.get("readOnly") and (
            "emptyDir" in volume or "persistentVolumeClaim" in volume
        )

    def policy(self) -> Policy:
        """The policy file the command reads, from the ConfigMap mounted at its path."""
        path = getattr(self.args, "policy", None) or self.settings.policy_file
        assert path, f"{self.name}: no policy file (SIGNIN_RISK_POLICY_FILE or --policy)"
        _, volume, inner = self.volume_of(path)
        assert "configMap" in volume, f"{self.name}: {path} is not from a ConfigMap"
        configmap = by_name(self.docs, "ConfigMap", volume["configMap"]["name"])
        assert str(inner) in configmap["data"], f"{self.name}: {path} is not in the ConfigMap"
        return policy_from_data(yaml.safe_load(configmap["data"][str(inner)]), path)

    def secret_refs(self) -> dict[str, tuple[str, str]]:
        return {
            item["name"]: (ref["name"], ref["key"])
            for item in self.container.get("env", [])
            if (ref := item.get("valueFrom", {}).get("secretKeyRef"))
        }


def app_containers(docs: list[dict[str, Any]]) -> list[K8sContainer]:
    return [K8sContainer(d, docs) for d in of_kind(docs, "Deployment")]


# --- Compose -------------------------------------------------------------------------------
#
# Merging follows the Compose Specification's rules for the keys these files use: mappings
# (environment, depends_on, build, healthcheck) merge by key, volumes by container path,
# sequences like ports and cap_drop are appended, anything else (image, command, profiles)
# is replaced by the override.

MAPPING_KEYS = {"environment", "depends_on", "build", "healthcheck", "labels", "deploy"}
APPENDED_KEYS = {"ports", "expose", "cap_add", "cap_drop", "security_opt", "tmpfs", "dns"}
INTERPOLATION = re.compile(r"^\$\{(?P<var>[A-Z_][A-Z0-9_]*)(?::?-(?P<default>[^}]*))?\}$")


def compose_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if key != "services":
            merged[key] = (merged.get(key) or {}) | value if isinstance(value, dict) else value
    for name, service in override.get("services", {}).items():
        target = merged["services"].setdefault(name, {})
        for key, value in service.items():
            if key in MAPPING_KEYS:
                assert isinstance(value, dict), f"{name}.{key}: use the mapping syntax"
                target[key] = (target.get(key) or {}) | value
            elif key == "volumes":
                mounts = {compose_mount(v)[1]: v for v in target.get(key, [])}
                mounts |= {compose_mount(v)[1]: v for v in value}
                target[key] = list(mounts.values())
            elif key in APPENDED_KEYS:
                target[key] = target.get(key, []) + [
                    v for v in value if v not in target.get(key, [])
                ]
            else:
                target[key] = copy.deepcopy(value)
    return merged


def compose_mount(volume: str) -> tuple[str, str, bool]:
    """(source, container path, read-only) of a short-syntax volume."""
    assert isinstance(volume, str), "use the short volume syntax"
    source, target, *mode = volume.split(":")
    return source, target, "ro" in mode


@functools.cache
def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def interpolate(value: str) -> str:
    """A value as Compose gives it with .env.example as the .env file."""
    match = INTERPOLATION.match(value)
    if match is None:
        assert "$" not in value.replace("$$", ""), f"unsupported interpolation in {value!r}"
        return value.replace("$$", "$")
    return env_example().get(match["var"]) or match["default"] or ""


@functools.cache
def _compose_files() -> str:
    return json.dumps([yaml.safe_load(path.read_text(encoding="utf-8")) for path in COMPOSE_FILES])


def compose_files() -> list[dict[str, Any]]:
    """compose.yaml and compose.override.yaml, parsed (a fresh copy each time)."""
    files: list[dict[str, Any]] = json.loads(_compose_files())
    return files


def compose_stack() -> dict[str, Any]:
    base, override = compose_files()
    return compose_merge(base, override)


def compose_variants() -> dict[str, dict[str, Any]]:
    base, _ = compose_files()
    return {"compose.yaml": base, "compose.yaml+override": compose_stack()}


class ComposeService:
    def __init__(self, name: str, service: dict[str, Any]) -> None:
        self.name, self.service = name, service
        self.args = parse_command(list(service.get("command", [])))

    @property
    def raw_env(self) -> dict[str, str]:
        env = self.service.get("environment", {})
        assert isinstance(env, dict), f"{self.name}: use the mapping syntax for environment"
        assert "env_file" not in self.service, f"{self.name}: variables are listed by name"
        return {k: str(v) for k, v in env.items()}

    @property
    def env(self) -> dict[str, str]:
        return {k: interpolate(v) for k, v in self.raw_env.items()}

    def provided(self, name: str) -> bool:
        """Set to a value, or to a variable of .env that the operator fills in."""
        value = self.raw_env.get(name)
        if value is None:
            return False
        match = INTERPOLATION.match(value)
        if match:
            return match["var"] in env_example() or bool(match["default"])
        return bool(value)

    @property
    def settings(self) -> Settings:
        return settings_from(self.env)

    def host_path(self, path: str) -> Path:
        """The file on this checkout that is bind-mounted at ``path``."""
        target = PurePosixPath(path)
        for volume in self.service.get("volumes", []):
            source, root, _ = compose_mount(volume)
            root_path = PurePosixPath(root)
            if source.startswith((".", "/")) and (
                target == root_path or root_path in target.parents
            ):
                return (COMPOSE_DIR / source / target.relative_to(root_path)).resolve()
        pytest.fail(f"{self.name}: no file of the repository is mounted at {path}")

    def writable(self, path: str) -> bool:
        target = PurePosixPath(path)
        for volume in self.service.get("volumes", []):
            source, root, read_only = compose_mount(volume)
            root_path = PurePosixPath(root)
            if target == root_path or root_path in target.parents:
                return not read_only and not source.startswith((".", "/"))
        return any(
            target == PurePosixPath(t) or PurePosixPath(t) in target.parents
            for t in self.service.get("tmpfs", [])
        )

    def policy(self) -> Policy:
        path = getattr(self.args, "policy", None) or self.settings.policy_file
        assert path, f"{self.name}: no policy file (SIGNIN_RISK_POLICY_FILE or --policy)"
        return load_policy(self.host_path(path))


def app_services(stack: dict[str, Any]) -> list[ComposeService]:
    return [
        ComposeService(name, service)
        for name, service in stack["services"].items()
        if is_app_image(service.get("image", ""))
    ]


# --- schemas -----------------------------------------------------------------------------

CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_v1alpha1_ScaledObject.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh_v1alpha1_TriggerAuthentication.json",
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): "kafka.strimzi.io_v1beta2_KafkaTopic.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_v1_ServiceMonitor.json",
}


def strict(schema: Any) -> Any:
    """An OpenAPI schema of a CRD where undeclared fields fail, as with
    ``kubectl apply --validate=strict`` (the API server would silently drop them)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMAS / CRD_SCHEMAS[api_version, kind]).read_text(encoding="utf-8"))
    schema = strict(schema)
    # metadata is ObjectMeta, checked on its own against Kubernetes' schema.
    schema["properties"]["metadata"] = {"type": "object"}
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@functools.cache
def objectmeta_validator(version: str) -> jsonschema.Draft202012Validator:
    """Kubernetes' ObjectMeta schema as kubernetes-validate ships it (strict variant)."""
    folder = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    folder = folder / f"v{version}.0-local-strict"
    schema = json.loads((folder / "objectmeta-meta-v1.json").read_text(encoding="utf-8"))
    definitions = json.loads((folder / "_definitions.json").read_text(encoding="utf-8"))
    registry: Registry[Any] = Resource.from_contents(definitions) @ Registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


@functools.cache
def compose_validator() -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(validator: jsonschema.protocols.Validator, doc: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(doc)
    ]


# === tests =================================================================================


def test_every_yaml_file_parses() -> None:
    files = sorted(
        {*COMPOSE_DIR.rglob("*.yaml"), *COMPOSE_DIR.rglob("*.yml"), *K8S.rglob("*.yaml")}
    )
    assert len(files) >= 20
    for path in files:
        docs = load_docs(path)
        assert docs, f"{path}: empty"
        assert all(isinstance(doc, dict) for doc in docs), f"{path}: a document is not a mapping"


# --- Compose ---


@pytest.mark.parametrize("variant", ["compose.yaml", "compose.override.yaml", "merged"])
def test_compose_matches_the_compose_spec(variant: str) -> None:
    base, override = compose_files()
    doc = {"compose.yaml": base, "compose.override.yaml": override, "merged": compose_stack()}
    assert schema_errors(compose_validator(), doc[variant]) == []


def test_compose_spec_schema_rejects_unknown_keys() -> None:
    """The schema copy is the real one: a misspelt key fails."""
    stack = compose_stack()
    stack["services"]["worker"]["enviroment"] = {}
    assert schema_errors(compose_validator(), stack)


def _compose_binary() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


@pytest.mark.skipif(_compose_binary() is None, reason="no docker compose binary on PATH")
def test_docker_compose_reads_the_stack_as_merged_here() -> None:
    """Docker Compose itself accepts both files, and agrees with the merge checked here."""
    command = [*(_compose_binary() or []), "--env-file", str(ENV_EXAMPLE)]
    for path in COMPOSE_FILES:
        command += ["-f", str(path)]
    env = {k: v for k, v in os.environ.items() if k not in env_example()}
    result = subprocess.run(
        [*command, "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    theirs = json.loads(result.stdout)["services"]
    ours = {
        name: service
        for name, service in compose_stack()["services"].items()
        if not service.get("profiles")
    }
    assert set(theirs) == set(ours)
    for name, service in ours.items():
        assert theirs[name]["image"] == service["image"], name
        assert theirs[name].get("command") == service.get("command"), name
        expected_env = {k: interpolate(str(v)) for k, v in service.get("environment", {}).items()}
        assert (theirs[name].get("environment") or {}) == expected_env, name
        assert [v["target"] for v in theirs[name].get("volumes", [])] == [
            compose_mount(v)[1] for v in service.get("volumes", [])
        ], name


def test_compose_runs_the_pipeline() -> None:
    base, _ = compose_files()
    commands = {s.name: s.args.command for s in app_services(base)}
    assert commands == {
        "topics": "topics",
        "worker": "worker",
        "bridge": "bridge",
        "forwarder": "forward",
    }
    image, _, _ = image_parts(base["services"]["kafka"]["image"])
    assert image == "apache/kafka"
    kafka_env = base["services"]["kafka"]["environment"]
    assert set(kafka_env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "ZOOKEEPER" not in json.dumps(kafka_env).upper()
    # The one-shot topics service must finish before anything reads or writes a topic.
    for service in app_services(base):
        if service.name != "topics":
            condition = service.service["depends_on"]["topics"]["condition"]
            assert condition == "service_completed_successfully", service.name
    # Local development replays the bundled sample instead of reading an Event Hub.
    stack = compose_stack()
    assert stack["services"]["bridge"].get("profiles"), "the bridge needs Azure: opt-in only"
    replay = next(s for s in app_services(stack) if s.name == "replay")
    assert replay.args.command == "replay"
    for path in replay.args.paths:
        assert replay.host_path(path).is_file(), path
    for service in app_services(stack):
        assert "build" in service.service, f"{service.name}: the override builds the image"
        assert service.service["build"]["dockerfile"] == "deploy/Dockerfile"


def test_compose_healthchecks() -> None:
    base, _ = compose_files()
    for name, service in base["services"].items():
        health = service.get("healthcheck", {})
        command = service.get("command", [])
        if name == "topics":
            assert health.get("disable") is True  # a one-shot job
            continue
        assert health.get("test"), f"{name}: no healthcheck"
        if is_app_image(service["image"]):
            port = settings_from(ComposeService(name, service).env).metrics_port
            assert f":{port}/metrics" in " ".join(health["test"]), f"{name} {command}"
    for name, service in compose_stack()["services"].items():
        for dependency, condition in service.get("depends_on", {}).items():
            if condition["condition"] == "service_healthy":
                assert (
                    not compose_stack()["services"][dependency]
                    .get("healthcheck", {})
                    .get("disable")
                ), f"{name} waits for {dependency}'s health, which is never checked"


def test_compose_bind_mounts_exist() -> None:
    """A missing source would be created empty by Docker and fail at run time."""
    for name, service in compose_stack()["services"].items():
        for volume in service.get("volumes", []):
            source, _, read_only = compose_mount(volume)
            if source.startswith((".", "/")):
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source} does not exist"
                assert read_only, f"{name}: mount {source} read-only"


def test_compose_prometheus_scrapes_every_app_service() -> None:
    config_path = DEPLOY / "prometheus" / "prometheus.yml"
    if not config_path.exists():
        pytest.skip("deploy/prometheus/prometheus.yml is not there yet")
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    base, _ = compose_files()
    services = {s.name: s for s in app_services(base) if s.name != "topics"}
    expected = {f"{name}:{s.settings.metrics_port}" for name, s in services.items()}
    assert expected <= targets, f"scrape targets {sorted(targets)} miss {expected - targets}"


# --- Kubernetes: rendering and schemas ---


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_kustomization_renders(name: str) -> None:
    docs = render(name)
    keys = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys)), f"duplicate resources in {name}"
    assert of_kind(docs, "Deployment")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) not on PATH")
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_rendering_equals_kubectl_kustomize(name: str) -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(KUSTOMIZATIONS[name])],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]

    def key(doc: dict[str, Any]) -> tuple[str, str, str]:
        return doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]

    def normalised(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Generated ConfigMap names with the hash suffix replaced by one placeholder."""
        text = re.sub(r"(signin-risk-policy)-[a-z0-9]{10}\b", r"\1-HASH", json.dumps(docs))
        return sorted(json.loads(text), key=key)

    theirs = normalised([d for d in yaml.safe_load_all(result.stdout) if d])
    ours = normalised(render(name))
    assert [key(d) for d in ours] == [key(d) for d in theirs]
    for mine, kustomize in zip(ours, theirs, strict=True):
        assert mine == kustomize, key(mine)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_resources_match_their_schemas(name: str, version: str) -> None:
    for doc in render(name):
        where = f"{name}: {doc['kind']} {doc['metadata']['name']}"
        crd = (doc["apiVersion"], doc["kind"])
        if crd in CRD_SCHEMAS:
            assert schema_errors(crd_validator(*crd), doc) == [], where
            assert schema_errors(objectmeta_validator(version), doc["metadata"]) == [], where
        else:
            assert is_builtin(doc), f"{where}: no schema for {crd}"
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{where}: {'/'.join(map(str, error.path))}: {error.message}")


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("ScaledObject", ("spec", "maxReplicas"), 4),
        ("ScaledObject", ("spec", "triggers"), "kafka"),
        ("KafkaTopic", ("spec", "partitions"), 0),
        ("KafkaTopic", ("spec", "cleanupPolicy"), "compact"),
        ("ServiceMonitor", ("spec", "endpoints"), [{"portName": "metrics"}]),
        ("TriggerAuthentication", ("spec", "secretTargetRef"), [{"parameter": "x", "name": "y"}]),
    ],
)
def test_crd_schemas_catch_mistakes(kind: str, path: tuple[str, ...], value: Any) -> None:
    """The kept schemas are strict enough to catch a misspelt or invalid field."""
    doc = copy.deepcopy(next(d for d in render("base") if d["kind"] == kind))
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    assert schema_errors(crd_validator(doc["apiVersion"], kind), doc)


def test_kubernetes_validate_is_strict() -> None:
    deployment = copy.deepcopy(of_kind(render("base"), "Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


# --- Kubernetes: what the application needs ---


def test_kafka_topics_are_the_applications_topics() -> None:
    """Every topic and table changelog of topic_specs(Settings()), with its partition count
    and cleanup policy, and the dead-letter topic of each deployed sink; nothing else."""
    defaults = settings_from({})
    for name in ("base", "production"):
        docs = render(name)
        containers = app_containers(docs)
        topic_settings = {
            (s.topic_prefix, s.app_id, s.partitions, s.raw_partitions)
            for s in (c.settings for c in containers)
        }
        assert topic_settings == {
            (defaults.topic_prefix, defaults.app_id, defaults.partitions, defaults.raw_partitions)
        }, f"{name}: every Deployment must use the default topic settings"
        expected = {s.name: (s.partitions, s.cleanup_policy) for s in topic_specs(defaults)}
        for container in containers:
            if container.args.command == "forward":
                dead = sink_deadletter(defaults, container.args.sink)
                expected[dead] = (defaults.partitions, "delete")
        topics = of_kind(docs, "KafkaTopic")
        actual = {
            t["spec"].get("topicName", t["metadata"]["name"]): (
                t["spec"]["partitions"],
                t["spec"].get("config", {}).get("cleanup.policy"),
            )
            for t in topics
        }
        assert len(actual) == len(topics), f"{name}: a topic is declared twice"
        assert actual == expected, name
        # Strimzi's cluster label names the cluster the pipeline connects to.
        clusters = {t["metadata"]["labels"]["strimzi.io/cluster"] for t in topics}
        assert len(clusters) == 1
        hosts = {c.settings.kafka_bootstrap.split(":")[0] for c in containers}
        assert hosts == {f"{clusters.pop()}-kafka-bootstrap"}, name


def test_eventhubs_kafka_overlay_follows_the_endpoint_profile() -> None:
    """config/eventhubs-kafka.env, as environment of every container; no Kafka cluster."""
    docs = render("eventhubs-kafka")
    assert not of_kind(docs, "KafkaTopic"), "hubs are created in Azure, not by Strimzi"
    assert not [c for c in app_containers(docs) if c.args.command == "bridge"]
    profile = {}
    for line in (ROOT / "config" / "eventhubs-kafka.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            profile[key] = value
    for container in app_containers(docs):
        settings = container.settings
        env = container.env
        for key, value in profile.items():
            field = SETTINGS_ENV[key]
            if key in SECRET_ENV:
                assert env.get(key) == SECRET_PLACEHOLDER, f"{container.name}: {key} from a Secret"
            elif "<namespace>" in value:
                pattern = re.escape(value).replace(re.escape("<namespace>"), "[a-z0-9-]+")
                assert re.fullmatch(pattern, env.get(key, "")), f"{container.name}: {key}"
            else:
                wanted = getattr(settings_from({key: value}), field)
                assert getattr(settings, field) == wanted, f"{container.name}: {key}"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_environment_names_are_settings(name: str) -> None:
    for container in app_containers(render(name)):
        sink = getattr(container.args, "sink", None)
        for env in container.env:
            match = SINK_SECRET.fullmatch(env)
            if match:
                assert sink and match["sink"] == sink_env_name(sink), f"{container.name}: {env}"
            else:
                assert env in SETTINGS_ENV or env in AZURE_ENV, f"{container.name}: {env}"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_each_command_gets_what_it_needs(name: str) -> None:
    docs = render(name)
    scaled = {so["spec"]["scaleTargetRef"]["name"]: so for so in of_kind(docs, "ScaledObject")}
    for container in app_containers(docs):
        where = f"{name}: {container.name}"
        env, settings, command = container.env, container.settings, container.args.command
        assert env.get("SIGNIN_RISK_KAFKA_BOOTSTRAP"), f"{where}: brokers"
        if settings.security_protocol.startswith("SASL"):
            assert settings.sasl_username and env.get("SIGNIN_RISK_SASL_PASSWORD"), where
        if settings.ssl_cafile:
            assert not container.writable(settings.ssl_cafile), f"{where}: CA from a Secret"
            _, volume, _ = container.volume_of(settings.ssl_cafile)
            assert "secret" in volume, where
        if command == "worker":
            container.policy()
            assert container.writable(settings.data_dir), f"{where}: {settings.data_dir}"
        elif command == "bridge":
            assert env.get("SIGNIN_RISK_EVENTHUB_CONNECTION_STRING") or (
                settings.eventhub_namespace and settings.eventhub_name
            ), f"{where}: the hub"
            replicas = scaled[container.name]["spec"]["maxReplicaCount"]
            if replicas > 1:
                assert settings.eventhub_checkpoint_store == "blob", f"{where}: shared checkpoints"
            if settings.eventhub_checkpoint_store == "blob":
                assert env.get("SIGNIN_RISK_EVENTHUB_BLOB_CONNECTION_STRING") or (
                    settings.eventhub_blob_account_url
                ), where
            else:
                assert container.writable(settings.eventhub_checkpoint_path), where
        elif command == "forward":
            check_sink(where, container.policy(), container.args.sink, env, settings)
        else:
            pytest.fail(f"{where}: unexpected command {command}")


def check_sink(
    where: str, policy: Policy, sink: str, env: Mapping[str, str], settings: Settings
) -> None:
    """What ``signin-risk forward --sink NAME`` refuses to start without."""
    config = sink_config(policy, sink)
    secret = f"SIGNIN_RISK_SINK_{sink_env_name(sink)}"
    if config.type == "hec":
        assert env.get(f"{secret}_TOKEN"), f"{where}: the HEC token"
    if config.type == "webhook":
        assert config.url or env.get(f"{secret}_URL"), f"{where}: the webhook URL"
    if config.type == "eventhub":
        assert env.get("SIGNIN_RISK_ALERTS_EVENTHUB_CONNECTION_STRING") or (
            settings.alerts_eventhub_namespace and settings.alerts_eventhub_name
        ), where
    if config.pseudonymize:
        assert env.get("SIGNIN_RISK_PSEUDONYM_KEY"), f"{where}: the pseudonym key"


def test_every_sink_has_a_forwarder() -> None:
    docs = render("base")
    forwarders = [c for c in app_containers(docs) if c.args.command == "forward"]
    sinks = {c.args.sink for c in forwarders}
    assert len(sinks) == len(forwarders), "one forwarder per sink"
    for container in forwarders:
        assert set(container.policy().sinks) == sinks
        assert container.deployment["spec"]["replicas"] == 1


def test_policy_is_config_policy_yaml() -> None:
    """The ConfigMap's detection policy is a copy of config/policy.yaml: same in effect."""
    copy_ = load_policy(K8S / "base" / "policy.yaml").effective()
    assert copy_ == load_policy(ROOT / "config" / "policy.yaml").effective()


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_keda_scales_on_the_applications_lag(name: str) -> None:
    docs = render(name)
    deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
    auths = {a["metadata"]["name"]: a for a in of_kind(docs, "TriggerAuthentication")}
    used_auths = set()
    scaled_objects = of_kind(docs, "ScaledObject")
    assert scaled_objects
    for so in scaled_objects:
        where = f"{name}: ScaledObject {so['metadata']['name']}"
        spec = so["spec"]
        target = spec["scaleTargetRef"]
        assert target.get("kind", "Deployment") == "Deployment", where
        deployment = deployments[target["name"]]
        assert "replicas" not in deployment["spec"], f"{where}: the HPA owns replicas"
        container = K8sContainer(deployment, docs)
        settings = container.settings
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], where
        for trigger in spec["triggers"]:
            meta = trigger["metadata"]
            if ref := trigger.get("authenticationRef"):
                auth = auths[ref["name"]]
                used_auths.add(ref["name"])
                for item in auth["spec"].get("env", []):
                    assert item["containerName"] == container.container["name"], where
                    assert container.env.get(item["name"]), f"{where}: {item['name']} unset"
            if trigger["type"] == "kafka":
                assert container.args.command == "worker", where
                consumed = {
                    "ingest": ["raw"],
                    "detect": ["signins", "by-ip"],
                    "all": ["raw", "signins", "by-ip"],
                }[settings.stage]
                assert meta["topic"] in [settings.topic(t) for t in consumed], where
                assert meta["consumerGroup"] == settings.group_id, where
                assert meta["bootstrapServers"] == settings.kafka_bootstrap, where
                partitions = {s.name: s.partitions for s in topic_specs(settings)}[meta["topic"]]
                assert spec["maxReplicaCount"] <= partitions, f"{where}: idle consumers"
                tls = settings.security_protocol in ("SSL", "SASL_SSL")
                assert (meta.get("tls") == "enable") == tls, where
                if settings.security_protocol.startswith("SASL"):
                    assert meta["sasl"] == KEDA_SASL[settings.sasl_mechanism], where
                    parameters = {p["parameter"] for p in auth["spec"].get("env", [])} | {
                        p["parameter"] for p in auth["spec"].get("secretTargetRef", [])
                    }
                    assert {"username", "password"} <= parameters, where
                else:
                    assert "sasl" not in meta and "authenticationRef" not in trigger, where
            elif trigger["type"] == "azure-eventhub":
                assert container.args.command == "bridge", where
                assert meta["consumerGroup"] == settings.eventhub_consumer_group, where
                assert meta["checkpointStrategy"] == "blobMetadata", where
                assert settings.eventhub_checkpoint_store == "blob", where
                assert meta["blobContainer"] == settings.eventhub_blob_container, where
                hub_partitions = int(so["metadata"]["annotations"][HUB_PARTITIONS])
                assert spec["maxReplicaCount"] <= hub_partitions, f"{where}: idle bridges"
                # KEDA reads the same hub and checkpoints as the bridge.
                refs = container.secret_refs()
                secrets = {
                    p["parameter"]: (p["name"], p["key"]) for p in auth["spec"]["secretTargetRef"]
                }
                assert secrets["connection"] == refs["SIGNIN_RISK_EVENTHUB_CONNECTION_STRING"]
                assert (
                    secrets["storageConnection"]
                    == refs["SIGNIN_RISK_EVENTHUB_BLOB_CONNECTION_STRING"]
                )
            else:
                pytest.fail(f"{where}: trigger {trigger['type']}")
    assert used_auths == set(auths), f"{name}: unused TriggerAuthentication"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_metrics_are_scraped(name: str) -> None:
    docs = render(name)
    containers = app_containers(docs)
    services = [s for s in of_kind(docs, "Service") if s["metadata"]["labels"].get(METRICS)]
    assert services
    for container in containers:
        port = container.settings.metrics_port
        ports = {p["name"]: p["containerPort"] for p in container.container["ports"]}
        assert ports == {"metrics": port}, container.name
        for probe in ("readinessProbe", "livenessProbe"):
            check = container.container[probe]
            action = check.get("httpGet") or check.get("tcpSocket")
            assert action and action["port"] in ("metrics", port), f"{container.name} {probe}"
        labels = container.deployment["spec"]["template"]["metadata"]["labels"]
        matching = [s for s in services if selects(s["spec"]["selector"], labels)]
        assert len(matching) == 1, f"{container.name}: scraped by {len(matching)} Services"
    for service in services:
        where = f"{name}: Service {service['metadata']['name']}"
        annotations = service["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", where
        selected = [
            c
            for c in containers
            if selects(
                service["spec"]["selector"], c.deployment["spec"]["template"]["metadata"]["labels"]
            )
        ]
        assert selected, f"{where} selects no pod"
        assert {annotations["prometheus.io/port"]} == {
            str(c.settings.metrics_port) for c in selected
        }
        assert [p["targetPort"] for p in service["spec"]["ports"]] == ["metrics"], where
    (monitor,) = of_kind(docs, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert set(monitor["spec"]["selector"]) == {"matchLabels"}
    monitored = [s for s in of_kind(docs, "Service") if selects(selector, s["metadata"]["labels"])]
    assert monitored == services
    port_names = {p["name"] for s in services for p in s["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names
    for label in monitor["spec"].get("podTargetLabels", []):
        assert any(
            label in c.deployment["spec"]["template"]["metadata"]["labels"] for c in containers
        )
    # The job label is the Service name: the job names deploy/prometheus/ alerts on.
    config_path = DEPLOY / "prometheus" / "prometheus.yml"
    if config_path.exists():
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        jobs = {job["job_name"] for job in config["scrape_configs"]}
        assert {s["metadata"]["name"] for s in services} <= jobs


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_selectors_are_consistent(name: str) -> None:
    docs = render(name)
    deployments = of_kind(docs, "Deployment")
    for deployment in deployments:
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert set(deployment["spec"]["selector"]) == {"matchLabels"}
        assert selects(selector, deployment["spec"]["template"]["metadata"]["labels"])
        others = [
            d["metadata"]["name"]
            for d in deployments
            if d is not deployment
            and selects(selector, d["spec"]["template"]["metadata"]["labels"])
        ]
        assert not others, f"{deployment['metadata']['name']} would also own {others}'s pods"
    for pdb in of_kind(docs, "PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        owners = [
            d for d in deployments if selects(selector, d["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(owners) == 1, pdb["metadata"]["name"]


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_secrets_only_by_reference(name: str) -> None:
    docs = render(name)
    assert not of_kind(docs, "Secret"), "Secrets are created by the operator, never committed"
    for doc in docs:
        for text in strings(doc):
            if doc["kind"] != "ConfigMap":
                assert not SECRET_TEXT.search(text), f"{doc['metadata']['name']}: {text[:40]}"
    for container in app_containers(docs):
        for item in container.container.get("env", []):
            if (
                item["name"] in SECRET_ENV
                or SINK_SECRET.fullmatch(item["name"])
                or item["name"] in OTHER_SECRETS
            ):
                assert "value" not in item, f"{container.name}: {item['name']} as a literal"
                assert set(item["valueFrom"]) == {"secretKeyRef"}, (
                    f"{container.name}: {item['name']}"
                )
    for auth in of_kind(docs, "TriggerAuthentication"):
        assert set(auth["spec"]) <= {"secretTargetRef", "env", "podIdentity"}, auth["metadata"]
    # Every Secret the manifests expect is documented for the operator.
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    names = set()
    for doc in docs:
        names |= {item["name"] for item in doc.get("spec", {}).get("secretTargetRef", [])}
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        names |= {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
        for container in pod.get("containers", []):
            names |= {
                e["valueFrom"]["secretKeyRef"]["name"]
                for e in container.get("env", [])
                if "secretKeyRef" in e.get("valueFrom", {})
            }
    for secret in names:
        assert f"`{secret}`" in readme, f"deploy/README.md does not tell how to create {secret}"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_pods_run_locked_down(name: str) -> None:
    for container in app_containers(render(name)):
        where = f"{name}: {container.name}"
        pod, spec = container.pod, container.container
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert pod["automountServiceAccountToken"] is False, where
        context = spec["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, where
        assert context["allowPrivilegeEscalation"] is False, where
        assert context["capabilities"] == {"drop": ["ALL"]}, where
        assert not context.get("privileged"), where
        assert container.writable("/tmp"), f"{where}: /tmp"
        resources_ = spec["resources"]
        for kind in ("requests", "limits"):
            assert set(resources_[kind]) == {"cpu", "memory"}, f"{where}: {kind}"
        if container.args.command == "worker":
            # `make bench`: RSS 102-160 MB; one process is held to about one core.
            assert resources_["requests"] == {"cpu": "1", "memory": "256Mi"}, where
            assert resources_["limits"]["memory"] == "512Mi", where


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_kubernetes_images_are_pinned(name: str) -> None:
    version = importlib.metadata.version("signin-risk")
    for doc in render(name):
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            assert_pinned(container["image"], f"{name}: {doc['metadata']['name']}")
            if is_app_image(container["image"]):
                assert image_parts(container["image"])[1] == version, "the release deployed"


# --- Compose: environment, secrets, images ---


@pytest.mark.parametrize("variant", ["compose.yaml", "compose.yaml+override"])
def test_compose_environment_names_are_settings(variant: str) -> None:
    stack = compose_variants()[variant]
    for service in app_services(stack):
        sink = getattr(service.args, "sink", None)
        for env in service.raw_env:
            match = SINK_SECRET.fullmatch(env)
            if match:
                assert sink and match["sink"] == sink_env_name(sink), f"{service.name}: {env}"
            else:
                assert env in SETTINGS_ENV or env in AZURE_ENV, f"{service.name}: {env}"
    referenced = {
        match["var"]
        for doc in compose_files()
        for text in strings(doc)
        for match in re.finditer(r"\$\{(?P<var>[A-Z_][A-Z0-9_]*)", text)
    }
    assert referenced == set(env_example()), ".env.example lists exactly what Compose reads"


@pytest.mark.parametrize("variant", ["compose.yaml", "compose.yaml+override"])
def test_compose_commands_get_what_they_need(variant: str) -> None:
    stack = compose_variants()[variant]
    services = app_services(stack)
    assert services
    for service in services:
        where = f"{variant}: {service.name}"
        settings, command = service.settings, service.args.command
        assert service.provided("SIGNIN_RISK_KAFKA_BOOTSTRAP"), f"{where}: brokers"
        assert settings.kafka_bootstrap.split(":")[0] in stack["services"], where
        if command == "worker":
            policy = service.policy()
            assert policy == load_policy(ROOT / "config" / "policy.yaml"), "config/policy.yaml"
            assert service.writable(settings.data_dir), f"{where}: {settings.data_dir}"
        elif command == "bridge":
            assert service.provided("SIGNIN_RISK_EVENTHUB_CONNECTION_STRING") or (
                service.provided("SIGNIN_RISK_EVENTHUB_NAMESPACE")
                and service.provided("SIGNIN_RISK_EVENTHUB_NAME")
            ), where
            if settings.eventhub_checkpoint_store == "sqlite":
                assert service.writable(settings.eventhub_checkpoint_path), where
        elif command == "forward":
            policy = service.policy()
            provided = {k: "set" for k in service.raw_env if service.provided(k)}
            check_sink(where, policy, service.args.sink, provided, settings)
            sink = sink_config(policy, service.args.sink)
            if sink.type == "syslog":
                assert sink.host in stack["services"], f"{where}: {sink.host}"
        elif command == "replay":
            for path in service.args.paths:
                assert service.host_path(path).is_file(), f"{where}: {path}"
        else:
            assert command == "topics", where


def test_compose_secrets_only_by_reference() -> None:
    for path in (*COMPOSE_FILES, ENV_EXAMPLE):
        assert not SECRET_TEXT.search(path.read_text()), path
    for stack in compose_variants().values():
        for name, service in stack["services"].items():
            for env, value in (service.get("environment") or {}).items():
                if env in SECRET_ENV or SINK_SECRET.fullmatch(env) or env in OTHER_SECRETS:
                    match = INTERPOLATION.match(str(value))
                    assert match and match["var"] == env, f"{name}: {env} must be ${{{env}}}"
                    assert match["default"] in (None, "", "admin"), f"{name}: {env}"
    for key, value in env_example().items():
        if key in SECRET_ENV or key in OTHER_SECRETS or SINK_SECRET.fullmatch(key):
            assert value == "", f".env.example: {key} has a value"
    ignored = (COMPOSE_DIR / ".gitignore").read_text().splitlines()
    assert ".env" in ignored, "deploy/compose/.env must be git-ignored"


@pytest.mark.parametrize("variant", ["compose.yaml", "compose.yaml+override"])
def test_compose_images_are_pinned_and_app_containers_locked_down(variant: str) -> None:
    version = importlib.metadata.version("signin-risk")
    for name, service in compose_variants()[variant]["services"].items():
        assert_pinned(service["image"], f"{variant}: {name}")
        if is_app_image(service["image"]):
            assert image_parts(service["image"])[1] == version, name
            assert service["read_only"] is True, name
            assert service["cap_drop"] == ["ALL"], name
            assert "no-new-privileges:true" in service["security_opt"], name
            assert "/tmp" in service["tmpfs"], name
            assert "user" not in service, f"{name}: the image's non-root user"


# --- the image ---


def test_dockerfile() -> None:
    lines = [
        line.strip()
        for line in (DEPLOY / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    bases = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert bases
    for base in bases:
        assert_pinned(base, "Dockerfile")
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric non-root user"
    assert json.loads(next(line for line in lines if line.startswith("ENTRYPOINT"))[10:]) == [
        "signin-risk"
    ]
    assert f"EXPOSE {settings_from({}).metrics_port}" in lines
    # Everything COPY'd from the context passes deploy/Dockerfile.dockerignore.
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore
    for line in lines:
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert f"!{source.rstrip('/')}" in [i.rstrip("/") for i in ignore], source
    for container in app_containers(render("base")):
        uid_k8s = container.pod["securityContext"]["runAsUser"]
        assert str(uid_k8s) == uid, "the manifests run as the image's user"


def test_readme_brings_compose_up() -> None:
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    command = " ".join(
        ["docker compose"]
        + [f"-f {path.relative_to(ROOT).as_posix()}" for path in COMPOSE_FILES]
        + ["up"]
    )
    assert command in readme
    for path in KUSTOMIZATIONS.values():
        assert path.relative_to(ROOT).as_posix() in readme
