"""CLIP's byte-level BPE tokenizer (OpenAI ``SimpleTokenizer`` behaviour), built from ``bpe_simple_vocab_16e6.txt.gz``.

Text is cleaned like OpenAI's (``ftfy.fix_text``, HTML entities unescaped twice, runs of whitespace collapsed to one
space, lower-cased), split with CLIP's word pattern, and each word is encoded as UTF-8 bytes mapped to printable
symbols, the last one marked with ``</w>``, then merged by BPE rank. Ids: 256 byte symbols, the same 256 with
``</w>``, one id per merge (48,894), then ``<|startoftext|>`` (49406) and ``<|endoftext|>`` (49407).
"""
from __future__ import annotations

import gzip
import html
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import ftfy
import regex
import torch

from ..errors import InputError
from ..hub import fetch_url, github_url

VOCAB_FILENAME = "bpe_simple_vocab_16e6.txt.gz"
#: openai/CLIP commit the vocabulary is downloaded from (the file is unchanged since January 2021).
CLIP_REPO, CLIP_COMMIT = "openai/CLIP", "d05afc436d78f1c48dc0dbf8e5980a9d471f35f6"
VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
NUM_MERGES = 49152 - 256 - 2
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
_WORD = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)
_SPACES = regex.compile(r"\s+")


def byte_symbols() -> dict[int, str]:
    """Each byte value -> one printable character: printable Latin-1 bytes map to themselves, the other 68 bytes
    to ``chr(256 + i)`` in byte order. Insertion order (printable bytes first) is the order of the first 256 ids."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + len(table) - len(printable))
    return table


def clean_text(text: str) -> str:
    """CLIP's text normalisation: ftfy, double HTML unescape, whitespace runs -> one space, strip, lower-case."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return _SPACES.sub(" ", text).strip().lower()


class CLIPTokenizer:
    """Text -> CLIP token ids. ``tokenizer(texts)`` gives the ``(N, 77)`` int64 tensor CLIP's text tower takes."""

    def __init__(self, vocab_file: str | os.PathLike) -> None:
        merges = _read_merges(Path(vocab_file))
        self._bytes = byte_symbols()
        symbols = list(self._bytes.values())
        vocab = symbols + [s + "</w>" for s in symbols] + [a + b for a, b in merges] + [SOT, EOT]
        self.ids = {token: i for i, token in enumerate(vocab)}
        self.vocab_size = len(vocab)
        self.sot_id, self.eot_id = self.ids[SOT], self.ids[EOT]
        self._ranks = {pair: rank for rank, pair in enumerate(merges)}
        self._words: dict[str, list[str]] = {SOT: [SOT], EOT: [EOT]}

    def _bpe(self, word: str) -> list[str]:
        """The BPE pieces of one word (already mapped to byte symbols), repeatedly merging the lowest-ranked pair."""
        if word in self._words:
            return self._words[word]
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            rank, pair = min((self._ranks.get(p, NUM_MERGES), p) for p in zip(pieces, pieces[1:]))
            if rank == NUM_MERGES:
                break
            merged, i = [], 0
            while i < len(pieces):
                if i + 1 < len(pieces) and (pieces[i], pieces[i + 1]) == pair:
                    merged.append(pieces[i] + pieces[i + 1])
                    i += 2
                else:
                    merged.append(pieces[i])
                    i += 1
            pieces = merged
        self._words[word] = pieces
        return pieces

    def encode(self, text: str) -> list[int]:
        """The token ids of ``text``, without the start and end tokens."""
        ids = []
        for word in _WORD.findall(clean_text(text)):
            symbols = "".join(self._bytes[b] for b in word.encode("utf-8"))
            ids.extend(self.ids[piece] for piece in self._bpe(symbols))
        return ids

    def __call__(self, texts: str | Sequence[str], context_length: int = 77, truncate: bool = False) -> torch.Tensor:
        """Token ids ``(N, context_length)`` int64: SOT, the text's ids, EOT, then zeros.

        A text longer than ``context_length`` tokens (SOT and EOT included) raises :class:`InputError` naming it,
        unless ``truncate=True``: then it is cut to ``context_length`` tokens whose last one is EOT.
        """
        if isinstance(texts, str):
            texts = [texts]
        out = torch.zeros(len(texts), context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.sot_id, *self.encode(text), self.eot_id]
            if len(ids) > context_length:
                if not truncate:
                    raise InputError(f"{text!r} is {len(ids)} CLIP tokens long (with start and end tokens); at most "
                                     f"{context_length} fit. Shorten it, or pass truncate=True to cut it.")
                ids = ids[:context_length - 1] + [self.eot_id]
            out[row, :len(ids)] = torch.tensor(ids)
        return out


def _read_merges(path: Path) -> list[tuple[str, str]]:
    """The BPE merges of the vocabulary file: lines 2 to 48,895 of the gzipped text, each ``"a b"``."""
    try:
        lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
    except FileNotFoundError as e:
        raise InputError(f"CLIP vocabulary file {path} does not exist.") from e
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not a gzipped UTF-8 text file ({e}); expected CLIP's {VOCAB_FILENAME}.") from e
    merges = [tuple(line.split()) for line in lines[1:NUM_MERGES + 1]]
    if len(merges) != NUM_MERGES or any(len(m) != 2 for m in merges):
        raise InputError(f"{path} does not hold CLIP's {NUM_MERGES} BPE merges; expected {VOCAB_FILENAME}.")
    return merges


_loaded: dict[Path, CLIPTokenizer] = {}


def clip_tokenizer(vocab_file: str | os.PathLike | None = None, *, progress: bool | None = None) -> CLIPTokenizer:
    """The CLIP tokenizer, built once per process and vocabulary file.

    Without ``vocab_file``, ``bpe_simple_vocab_16e6.txt.gz`` is downloaded once from openai/CLIP at a pinned
    commit into the vfe_hub cache and checked against its sha256; pass a local copy of it to work offline.
    """
    if vocab_file is None:
        url = github_url(CLIP_REPO, CLIP_COMMIT, f"clip/{VOCAB_FILENAME}")
        vocab_file = fetch_url(url, sha256=VOCAB_SHA256, filename=VOCAB_FILENAME, progress=progress)
    path = Path(vocab_file).resolve()
    if path not in _loaded:
        _loaded[path] = CLIPTokenizer(path)
    return _loaded[path]
