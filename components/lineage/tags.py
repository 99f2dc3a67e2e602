"""The lineage tags every run and model version carries: which data, code, config and validation produced it."""

from __future__ import annotations

from components.core.names import (TAG_CODE_DIRTY, TAG_CODE_GIT_REV, TAG_CONFIG_NAME, TAG_DATA_GIT_REV, TAG_DATASET_MD5,
                                   TAG_DATASET_PATH, TAG_RUN_ID, TAG_VALIDATION, TAG_VALIDATION_IMAGES)
from components.data.versioning import DatasetVersion
from components.validation.report import ValidationReport


def lineage_tags(dataset: DatasetVersion, validation: ValidationReport, run_id: str, config_name: str) -> dict[str, str]:
    """The tags as plain strings (None becomes 'unknown')."""
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
    }
