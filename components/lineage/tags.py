"""The lineage tags every run and model version carries: which data, code, config and validation produced it."""

from __future__ import annotations

import getpass
import json

from components.core.atomic import bytes_digest, json_bytes
from components.core.names import (
    TAG_CODE_DIRTY,
    TAG_CODE_GIT_REV,
    TAG_CONFIG_NAME,
    TAG_CONFIG_SHA256,
    TAG_DATA_DIRTY,
    TAG_DATA_GIT_REV,
    TAG_DATASET_MD5,
    TAG_DATASET_PATH,
    TAG_RUN_ID,
    TAG_VALIDATION,
    TAG_VALIDATION_IMAGES,
    TAG_VALIDATION_SHA256,
)
from components.data.versioning import DatasetVersion
from components.validation.results import ValidationReport


def lineage_tags(
    dataset: DatasetVersion, validation: ValidationReport, run_id: str, config_name: str, config_sha256: str, validation_sha256: str
) -> dict[str, str]:
    """The tags as plain strings (None becomes 'unknown'); the digests pin the run's config and validation report
    artifacts byte for byte."""

    def s(v):
        return "unknown" if v is None else str(v)

    return {
        TAG_DATASET_MD5: s(dataset.md5),
        TAG_DATASET_PATH: s(dataset.path),
        TAG_DATA_GIT_REV: s(dataset.data_git_rev),
        TAG_CODE_GIT_REV: s(dataset.code_git_rev),
        TAG_CODE_DIRTY: s(dataset.code_dirty),
        TAG_VALIDATION: s(validation.success),
        TAG_VALIDATION_IMAGES: s(validation.images),
        TAG_RUN_ID: s(run_id),
        TAG_CONFIG_NAME: s(config_name),
        TAG_DATA_DIRTY: s(dataset.data_dirty),
        TAG_CONFIG_SHA256: config_sha256,
        TAG_VALIDATION_SHA256: validation_sha256,
    }


def artifact_digest(obj: dict) -> str:
    """The sha256 of `obj` as RunTracker.json logs it."""
    return bytes_digest(json_bytes(obj))


def mlflow_identity_tags(dataset: DatasetVersion) -> dict[str, str]:
    """MLflow's own tags for the code commit and the user, which its UI shows on every run."""
    from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_USER

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers) and no USER/LOGNAME
        user = "unknown"
    return {MLFLOW_USER: user, **({MLFLOW_GIT_COMMIT: dataset.code_git_rev} if dataset.code_git_rev else {})}


def dataset_input(dataset: DatasetVersion, report: ValidationReport, remote: str | None) -> dict[str, str]:
    """The run's dataset as MLflow's Dataset entity takes it: the DVC md5 as its digest, the DVC remote and revision
    as its source, the image shape and labels as its schema, the validation profile as its profile."""
    profile = report.profile
    source = {
        "dvc_remote": remote,
        "data_dvc_revision": dataset.data_git_rev,
        "data_dvc_uncommitted": dataset.data_dirty,
        "path": dataset.path,
        "md5": dataset.md5,
    }
    schema = {"image_shape": list(profile.image_shape) if profile.image_shape else None, "labels": sorted(profile.class_fractions)}
    return {
        "name": f"{dataset.path.rstrip('/').split('/')[-1]}@{dataset.md5[:8]}",
        "digest": dataset.md5,
        "source_type": "dvc",
        "source": json.dumps(source, sort_keys=True),
        "schema": json.dumps(schema, sort_keys=True),
        "profile": json.dumps(
            {
                "images": profile.images,
                "class_fractions": profile.class_fractions,
                "pixel_mean": profile.pixel_mean,
                "pixel_std": profile.pixel_std,
            },
            sort_keys=True,
        ),
    }
