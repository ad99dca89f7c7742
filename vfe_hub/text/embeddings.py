"""Class-embedding matrices for open-vocabulary detectors (DetPro, ViLD*) from CLIP's text tower, cached on disk.

Cache layout: ``<cache_dir>/embeddings/<sha256>.safetensors`` (tensor ``embeddings``), the key hashing the
encoder's weights identity, the prompt mode (ViLD templates, or the sha256 of DetPro's learned contexts) and the
class names in order.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ..errors import InputError
from ..hub import atomic_write, cache_dir, read_safetensors
from ..layers.clip_text import CLIPTextEncoder
from ..layers.precision import float32
from ..progress import progress_bar
from .prompts import VILD_TEMPLATES, detpro_prompt, vild_prompts
from .tokenizer import CLIPTokenizer

#: Bumped when the computation changes, so older cache files are no longer read.
CACHE_VERSION = 1


def check_names(names: Sequence[str]) -> list[str]:
    """``names`` as a list; raises :class:`InputError` naming empty, non-string or duplicated entries."""
    if isinstance(names, str) or not isinstance(names, Sequence) or not names:
        raise InputError(f"names must be a non-empty list of class names, got {names!r}.")
    bad = [name for name in names if not isinstance(name, str) or not name.strip()]
    if bad:
        raise InputError(f"Class names must be non-empty strings; these are not: {bad!r}.")
    duplicated = [name for name, count in Counter(names).items() if count > 1]
    if duplicated:
        raise InputError(f"Class names must be unique; these appear more than once: {duplicated!r}.")
    return list(names)


@float32("CLIP text tower")
def _normalised_features(encoder: CLIPTextEncoder, tokens: torch.Tensor, context: torch.Tensor | None,
                         batch_size: int, bar: tqdm) -> torch.Tensor:
    """L2-normalised float32 text features ``(M, D)`` on the CPU of token rows ``(M, 77)``, in batches; computed in
    float32 also under autocast (the cache must not depend on the dtype a model runs in)."""
    device = encoder.text_projection.device
    out = []
    for start in range(0, len(tokens), batch_size):
        features = encoder(tokens[start:start + batch_size].to(device), context)
        out.append(F.normalize(features, dim=-1).cpu())
        bar.update(1)
    return torch.cat(out)


def _tokenize(tokenizer: CLIPTokenizer, prompts: dict[str, list[str]]) -> torch.Tensor:
    """Token rows ``(sum of prompts, 77)`` of each name's prompt texts, name after name; names too long for CLIP's
    context raise :class:`InputError` naming them."""
    rows = []
    for name, texts in prompts.items():
        try:
            rows.append(tokenizer(texts))
        except InputError as e:
            raise InputError(f"Class name {name!r} is too long for CLIP's text context: {e}") from None
    return torch.cat(rows)


def _compute(encoder: CLIPTextEncoder, tokenizer: CLIPTokenizer, names: list[str], contexts: torch.Tensor | None,
             batch_size: int, progress: bool | None) -> torch.Tensor:
    if contexts is not None:
        tokens = _tokenize(tokenizer, {name: [detpro_prompt(name, contexts.shape[1])] for name in names})
        runs = [(tokens, context) for context in contexts]
    else:
        runs = [(_tokenize(tokenizer, {name: vild_prompts(name) for name in names}), None)]
    batches = sum(-(-len(tokens) // batch_size) for tokens, _ in runs)
    with torch.no_grad(), progress_bar(total=batches, desc="class embeddings", progress=progress) as bar:
        features = [_normalised_features(encoder, tokens, context, batch_size, bar) for tokens, context in runs]
    if contexts is not None:
        return F.normalize(torch.stack(features).sum(dim=0), dim=-1)
    return F.normalize(features[0].view(len(names), len(VILD_TEMPLATES), -1).mean(dim=1), dim=-1)


def _cache_path(weights_id: str, contexts: torch.Tensor | None, names: list[str]) -> Path:
    if contexts is None:
        mode = "vild"
    else:
        values = contexts.detach().to("cpu", torch.float32).contiguous()
        mode = f"detpro:{list(values.shape)}:{hashlib.sha256(values.numpy().tobytes()).hexdigest()}"
    key = json.dumps([CACHE_VERSION, weights_id, mode, names], ensure_ascii=False)
    return cache_dir() / "embeddings" / f"{hashlib.sha256(key.encode()).hexdigest()}.safetensors"


def _check_contexts(contexts: torch.Tensor | None, width: int | None) -> torch.Tensor | None:
    """``contexts`` as ``(P, K, width)`` (a single ``(K, width)`` gets P = 1); ``width=None`` skips that check."""
    if contexts is None:
        return None
    contexts = contexts[None] if contexts.dim() == 2 else contexts
    if (contexts.dim() != 3 or not len(contexts) or not contexts.shape[1]
            or (width is not None and contexts.shape[2] != width)):
        raise InputError(f"contexts must have shape (P, K, {width or 'width'}) or (K, {width or 'width'}), got "
                         f"{tuple(contexts.shape)}.")
    return contexts


def class_embeddings(encoder: CLIPTextEncoder | Callable[[], CLIPTextEncoder],
                     tokenizer: CLIPTokenizer | Callable[[], CLIPTokenizer], names: Sequence[str], *,
                     contexts: torch.Tensor | None = None, weights_id: str | None = None, batch_size: int = 256,
                     progress: bool | None = None) -> torch.Tensor:
    """L2-normalised class embeddings ``(C, D)`` float32 (CPU) of the ``C`` class ``names``.

    With ``contexts`` ``(P, K, width)`` (or one ``(K, width)``), DetPro's learned prompts: for each context, the
    text ``"X ... X {name}."`` (K placeholders; name with ``_`` -> space, parentheses dropped) is encoded with the
    context in place of the placeholders and L2-normalised; the P results are summed and L2-normalised. Without,
    ViLD*'s manual ensemble: each of the 74 templates formatted with the raw name, encoded, L2-normalised,
    averaged over templates, L2-normalised.

    ``weights_id`` identifies the encoder's weights (e.g. their sha256); when given, the result is stored under
    ``<cache_dir>/embeddings`` and later calls with the same weights, prompts and names read it instead of
    running the encoder. ``encoder`` and ``tokenizer`` may be given as zero-argument functions that build them:
    they are called only when the result is not in the cache. Names must be unique non-empty strings that fit
    CLIP's 77 tokens (:class:`InputError`).
    """
    names = check_names(names)
    contexts = _check_contexts(contexts, None)
    target = _cache_path(weights_id, contexts, names) if weights_id is not None else None
    if target is not None and target.is_file():
        return read_safetensors(target)["embeddings"]
    encoder = encoder if isinstance(encoder, CLIPTextEncoder) else encoder()
    tokenizer = tokenizer if isinstance(tokenizer, CLIPTokenizer) else tokenizer()
    contexts = _check_contexts(contexts, encoder.positional_embedding.shape[1])
    embeddings = _compute(encoder, tokenizer, names, contexts, batch_size, progress)
    if target is not None:
        tensors = {"embeddings": embeddings.contiguous()}
        metadata = {"weights": weights_id, "names": json.dumps(names, ensure_ascii=False)}
        atomic_write(target, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return embeddings
