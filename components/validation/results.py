"""The validation report: typed, and turned into JSON only where it is logged or printed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class RuleFailure:
    """One broken rule and the files that broke it (at most `max_files` named; `file_count` counts all)."""

    rule: str
    expectation: str | None
    column: str | None
    observed: object
    files: list[str] = field(default_factory=list)
    file_count: int = 0


@dataclass(frozen=True)
class DatasetProfile:
    """What drift is measured on: class fractions and pixel statistics of the decodable images."""

    images: int
    class_fractions: dict[str, float]
    pixel_mean: float | None
    pixel_std: float | None
    image_shape: tuple[int, int, int] | None = None  # (channels, height, width) when all images share one


@dataclass(frozen=True)
class Drift:
    baseline_md5: str | None
    findings: list[str]
    policy: str


@dataclass(frozen=True)
class ValidationReport:
    success: bool
    images: int
    failures: list[RuleFailure]
    profile: DatasetProfile
    drift: Drift
    data_docs: str | None = None
    dataset_md5: str | None = None  # the DVC md5 of the dataset validated, when known

    def to_dict(self) -> dict:
        return asdict(self)


def format_failures(report: ValidationReport) -> str:
    """One readable line per failed rule, naming the files."""
    lines = []
    for f in report.failures:
        what = ", ".join(f.files) if f.files else f"observed {f.observed}"
        more = f" and {f.file_count - len(f.files)} more" if f.file_count > len(f.files) else ""
        lines.append(f"rule '{f.rule}' broken by {what}{more}")
    return "; ".join(lines)
