"""Exports in S3 (or any S3-compatible store, `AWS_ENDPOINT_URL` honoured), through boto3.

`publish_export` uploads a verified local export to `s3://bucket/prefix/<model>/v<version>/`: it deletes the
manifest there first (publishing again over an older export), uploads every file the manifest lists, and the
manifest last. The manifest is the commit point: a prefix without one is not an export (a reader is refused while
a publish runs, and after a publisher was killed until the next publish), and a reader checks every file it
downloads against the manifest it read (`runtime.load_served`), so a reader never accepts part of an export. `fetch_export` is the reader: the manifest, then exactly the files it names, into a
local folder.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from components.core.atomic import replace_folder
from components.core.errors import GanopsError
from components.core.paths import parse_s3_url
from components.serving.export import manifest_digest, parse_manifest, verify_export
from components.serving.formats import MANIFEST


def parse_s3(url: str) -> tuple[str, str]:
    return parse_s3_url(url, "export URL")


def _client():
    import boto3

    return boto3.client("s3")


def export_url(base: str, model_name: str, version: str) -> str:
    bucket, prefix = parse_s3(base)
    return f"s3://{bucket}/{prefix}{model_name}/v{version}"


def publish_export(folder: Path, base: str) -> str:
    """Upload the export at `folder` under `base` (s3://bucket/prefix), manifest last; returns the export's URL.
    Refuses a local export that does not verify."""
    from botocore.exceptions import BotoCoreError, ClientError

    check = verify_export(folder)
    if not check["ok"]:
        raise GanopsError(f"export {folder} does not match its manifest ({check['files']}); not publishing it")
    manifest = check["manifest"]
    url = export_url(base, manifest["model_name"], str(manifest["model_version"]))
    bucket, key = parse_s3(url)
    s3 = _client()
    try:
        s3.delete_object(Bucket=bucket, Key=key + MANIFEST)  # from here until the last upload: not an export
        for name in sorted(manifest["files"]):
            s3.upload_file(str(folder / name), bucket, key + name)
        s3.upload_file(str(folder / MANIFEST), bucket, key + MANIFEST)  # the commit point, last
    except (BotoCoreError, ClientError) as e:
        raise GanopsError(f"publishing {folder} to {url}: {e}") from None
    return url


def unpublish_export(url: str) -> None:
    """Delete the published manifest: the prefix is no longer an export, readers refuse it (the files stay)."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = parse_s3(url)
    try:
        _client().delete_object(Bucket=bucket, Key=key + MANIFEST)
    except (BotoCoreError, ClientError) as e:
        raise GanopsError(f"could not withdraw {url}/{MANIFEST} from S3: {e}") from None


def published_manifest_digest(url: str) -> str | None:
    """The sha256 of the manifest published at `url`, or None when there is none."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = parse_s3(url)
    try:
        body = _client().get_object(Bucket=bucket, Key=key + MANIFEST)["Body"].read()
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise GanopsError(f"reading {url}/{MANIFEST}: {e}") from None
    except BotoCoreError as e:
        raise GanopsError(f"reading {url}/{MANIFEST}: {e}") from None
    return hashlib.sha256(body).hexdigest()


def fetch_export(url: str, dest: Path) -> Path:
    """Download the export at `url` into `dest` (replaced whole): its manifest, then each file the manifest names.
    Raises GanopsError naming the URL when there is no manifest, or the object that cannot be read."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = parse_s3(url)
    s3 = _client()

    def build(tmp: Path) -> None:
        try:
            s3.download_file(bucket, key + MANIFEST, str(tmp / MANIFEST))
        except (BotoCoreError, ClientError) as e:
            raise GanopsError(f"{url} is not an export: no {MANIFEST} ({e})") from None
        names = list(parse_manifest((tmp / MANIFEST).read_bytes(), f"{url}/{MANIFEST}")["files"])  # plain names only
        for name in names:
            try:
                s3.download_file(bucket, key + name, str(tmp / name))
            except (BotoCoreError, ClientError) as e:
                raise GanopsError(f"{url}/{name} cannot be read ({e})") from None

    replace_folder(build, dest)
    return dest


def is_published(folder: Path, url: str) -> bool:
    return published_manifest_digest(url) == manifest_digest(folder)
