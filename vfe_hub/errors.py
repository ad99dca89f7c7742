"""The exceptions of vfe_hub: each names the input at fault and says how to fix it."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class VfeHubError(Exception):
    """Base class of every error vfe_hub raises on purpose."""


class UnknownModelError(VfeHubError, KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class WeightsNotFoundError(VfeHubError, FileNotFoundError):
    """Weights that cannot be found locally or on the Hub."""


class DownloadError(VfeHubError, ConnectionError):
    """A file that could not be downloaded (network, server or offline mode)."""


class DriveQuotaError(DownloadError):
    """Google Drive refused a file because too many users downloaded it recently (its download quota)."""


class DriveAccessError(DownloadError):
    """Google Drive would not serve a file: it was removed, or is not shared with anyone who has the link."""


class DrivePageError(DownloadError):
    """Google Drive answered with an HTML page where the file's bytes were expected."""


class IncompleteDownloadError(DownloadError):
    """A download that ended before all the bytes the server announced had arrived."""


class ChecksumError(VfeHubError):
    """A downloaded or cached file whose sha256 is not the pinned one."""


class CorruptWeightsError(VfeHubError):
    """A weights file that cannot be read (truncated, wrong format, not weights)."""


class ConversionError(VfeHubError):
    """An original checkpoint whose keys or shapes do not match the model."""


class UnknownArgumentError(VfeHubError, TypeError):
    """A keyword argument that the function does not take (a misspelt name, usually)."""


class InputError(VfeHubError, ValueError):
    """An input to ``predict`` that cannot be read (missing file, not an image or video, empty video)."""


class MissingDependencyError(VfeHubError, ImportError):
    """An optional package (an extra of vfe_hub) that an export such as ``Detections.to_df`` needs is not
    installed."""


class DatasetError(VfeHubError, ValueError):
    """An annotation file or dataset folder that cannot be read."""


def close_matches(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates closest to ``word`` (difflib ratio >= 0.4, ignoring case), best first."""
    by_key: dict[str, str] = {}
    for candidate in candidates:
        by_key.setdefault(candidate.lower(), candidate)
    return [by_key[key] for key in difflib.get_close_matches(word.lower(), list(by_key), n=n, cutoff=0.4)]


def unknown_keyword_error(where: str, given: Iterable[str], valid: Iterable[str]) -> UnknownArgumentError:
    """An :class:`UnknownArgumentError` (a ``TypeError``) for unknown keyword arguments, suggesting the closest valid
    names."""
    valid = sorted(valid)
    parts = []
    for name in given:
        hint = close_matches(name, valid, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    return UnknownArgumentError(f"{where} got unknown keyword argument(s) {', '.join(parts)}; "
                                f"valid: {', '.join(valid)}")
