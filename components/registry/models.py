"""The MLflow Model Registry: versions, aliases (`champion`, `challenger`, `previous_champion`; never the
deprecated stages), the registered weights, and the tags the gate and export leave on a version."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from components.core.atomic import file_digest
from components.core.errors import RegistryError
from components.core.names import (
    CHAMPION,
    TAG_DATASET_MD5,
    TAG_EXPORT_DIR,
    TAG_EXPORT_MANIFEST,
    TAG_EXPORT_URI,
    TAG_TRAIN_KEY,
    TAG_WEIGHTS_SHA256,
    TAG_WITHDRAWN,
)
from components.core.paths import check_path_name


def parse_model_ref(text: str) -> tuple[str, str | None]:
    """'NAME', 'NAME@ALIAS', 'NAME@VERSION' or 'models:/NAME/VERSION|ALIAS' -> (name, alias or version or None)."""
    if text.startswith("models:/"):
        rest = text.removeprefix("models:/")
        name, _, ref = rest.partition("/") if "/" in rest else rest.partition("@")  # models:/NAME@ALIAS too
    else:
        name, _, ref = text.partition("@")
    if not name:
        raise RegistryError(f"{text!r} names no model (expected MODEL, MODEL@ALIAS, MODEL@VERSION or models:/MODEL/VERSION)")
    return name, ref or None


def version_by_alias(mlc, model_name: str, alias: str):
    """The model version holding `alias`, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return mlc.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def require_model(mlc, model_name: str) -> None:
    """Raise RegistryError naming the model when it is not registered."""
    from mlflow.exceptions import MlflowException

    try:
        mlc.get_registered_model(model_name)
    except MlflowException:
        raise RegistryError(f"model {model_name!r} is not in the registry") from None


def current_aliases(mlc, model_name: str) -> dict[str, str]:
    """{alias: version} of a registered model ({} when the model does not exist yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return {alias: str(version) for alias, version in (mlc.get_registered_model(model_name).aliases or {}).items()}
    except MlflowException:
        return {}


def set_aliases(mlc, model_name: str, wanted: dict[str, str], tracked: tuple[str, ...]) -> None:
    """Make the `tracked` aliases equal `wanted`: set the ones that differ, delete the ones `wanted` lacks."""
    now = current_aliases(mlc, model_name)
    for alias in tracked:
        if alias in wanted and now.get(alias) != wanted[alias]:
            mlc.set_registered_model_alias(model_name, alias, wanted[alias])
        elif alias not in wanted and alias in now:
            mlc.delete_registered_model_alias(model_name, alias)


def resolve_version(mlc, model_name: str, ref: str | None):
    """`ref` is an alias, a version number, or None for the champion. Raises RegistryError naming what is missing."""
    from mlflow.exceptions import MlflowException

    ref = ref or CHAMPION
    try:
        if ref.isdigit():
            return mlc.get_model_version(model_name, ref)
        return mlc.get_model_version_by_alias(model_name, ref)
    except MlflowException:
        pass
    try:
        mlc.get_registered_model(model_name)
    except MlflowException:
        raise RegistryError(f"model {model_name!r} is not in the registry") from None
    raise RegistryError(f"model {model_name!r} has no version or alias {ref!r} in the registry")


@contextmanager
def download_weights(mv) -> Iterator[Path]:
    """The safetensors file of a registered version (an MLflow ModelVersion), downloaded to a temporary folder
    (removed on exit) and checked against the sha256 recorded at registration (tag ganops.weights_sha256). Raises
    RegistryError naming the file when the bytes differ: a changed or damaged file is never loaded. Versions
    registered before the tag existed have nothing to check against."""
    import mlflow

    name, version = mv.name, str(mv.version)
    with tempfile.TemporaryDirectory(prefix="ganops-weights-") as dest:
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=dest)
        found = sorted(Path(local).rglob("*.safetensors"))
        if not found:
            raise RegistryError(f"model {name} version {version} has no safetensors weights in its artifacts")
        expected = (mv.tags or {}).get(TAG_WEIGHTS_SHA256)
        if not expected and TAG_TRAIN_KEY in (mv.tags or {}):  # registered with a digest, which has been removed
            raise RegistryError(
                f"{name} version {version}: its tag {TAG_WEIGHTS_SHA256} is missing, so its weights cannot be "
                "checked; refusing to load them"
            )
        if expected:
            got = file_digest(found[0])
            if got != expected:
                raise RegistryError(
                    f"{name} version {version}: its weights {found[0].name} (artifact of {mv.source}) have sha256 "
                    f"{got[:16]}..., not the {expected[:16]}... recorded at registration; refusing to load them"
                )
        yield found[0]


def prior_version(mlc, model_name: str, train_key: str, weights_sha256: str) -> str | None:
    """The version registered from this very training result: the same training key and the same weight bytes
    (non-deterministic training, on GPUs or with DDP, gives other bytes under the same key: a new version)."""
    found = mlc.search_model_versions(
        f"name = '{check_path_name(model_name, 'model')}' and tags.`{TAG_TRAIN_KEY}` = "
        f"'{train_key}' and tags.`{TAG_WEIGHTS_SHA256}` = '{weights_sha256}'"
    )
    return str(max(int(v.version) for v in found)) if found else None


def search_versions(mlc, filter_string: str) -> list:
    """Every model version the filter matches, page by page (a search answers at most a page)."""
    found, token = [], None
    while True:
        page = mlc.search_model_versions(filter_string, max_results=1000, page_token=token)
        found += list(page)
        token = getattr(page, "token", None)
        if not token:
            return found


def versions_trained_on(mlc, dataset_md5: str) -> list:
    """Every model version (of any model) whose lineage names dataset `dataset_md5`, oldest first."""
    found = search_versions(mlc, f"tags.`{TAG_DATASET_MD5}` = '{dataset_md5}'")
    return sorted(found, key=lambda v: (v.name, int(v.version)))


def refuse_withdrawn_data(mlc, dataset_md5: str) -> None:
    """Raise RegistryError when a version trained on `dataset_md5` was withdrawn (`ganops withdraw`): that data is
    not trained on, registered or promoted again."""
    withdrawn = [v for v in versions_trained_on(mlc, dataset_md5) if (v.tags or {}).get(TAG_WITHDRAWN)]
    if withdrawn:
        v = withdrawn[0]
        raise RegistryError(
            f"dataset {dataset_md5} was withdrawn ({v.name} version {v.version}: {v.tags[TAG_WITHDRAWN]}); "
            "import a corrected dataset version instead"
        )


def all_versions(mlc, model_name: str) -> list:
    """Every version of `model_name`."""
    return search_versions(mlc, f"name = '{check_path_name(model_name, 'model')}'")


def record_export(mlc, model_name: str, version: str, folder: Path, manifest_sha256: str, url: str | None = None) -> None:
    """The version's export folder, its manifest's sha256 (the manifest hashes every other file) and, when it was
    published to S3, its URL."""
    mlc.set_model_version_tag(model_name, version, TAG_EXPORT_MANIFEST, manifest_sha256)
    if url:
        mlc.set_model_version_tag(model_name, version, TAG_EXPORT_URI, url)
    mlc.set_model_version_tag(model_name, version, TAG_EXPORT_DIR, str(folder))
