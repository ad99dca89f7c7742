"""CLIP's text side (vfe_hub.text, vfe_hub.layers.clip_text): the tokenizer against open_clip's (OpenAI's), through
the download path served from 127.0.0.1; the text tower against a float64 reference and open_clip's text tower;
class-embedding matrices with DetPro and ViLD prompts and their disk cache."""
from __future__ import annotations

import gzip
import hashlib
import shutil
import string
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vfe_hub.errors import ChecksumError, InputError
from vfe_hub.layers.clip_text import CLIPTextEncoder
from vfe_hub.text import (VILD_TEMPLATES, CLIPTokenizer, class_embeddings, clip_tokenizer, detpro_name, detpro_prompt,
                          vild_prompts)
from vfe_hub.text import embeddings as embeddings_module
from vfe_hub.text.tokenizer import VOCAB_FILENAME, VOCAB_SHA256

OPEN_CLIP_VOCAB = Path(open_clip.__file__).parent / VOCAB_FILENAME
SMALL = dict(width=32, layers=2, heads=4, embed_dim=16)

TRICKY = [
    "aerosol_can", "speaker_(stereo_equipment)", "bow_(weapon)", "ski_pole(s)", "Dixie_cup", "trench coat/raincoat",
    "person's", "don't", "They'll've we'd I'm", "Rubik's cube", "crème brûlée", "jalapeño", "naïve café", "straße",
    "İstanbul", "日本", "寿司 と ラーメン", "🍕🐈‍⬛", "x² ½", "&amp;", "Tom &amp;amp; Jerry", "&lt;b&gt; <i>", "7-up",
    "1/2", "2.5 liters 1234567890", "  extra   white\tspace\n\n", "\u00a0non\u00a0breaking\u3000", "UPPER Case",
    "mojibake Ã©tÃ©", "", string.punctuation, "hook_and_eye?!", "a\"quoted\"b 'single'", "post-it e-reader x-ray",
]
LONG = "a photo of " * 30  # 90 words: too long for 77 tokens


@pytest.fixture(scope="module")
def tokenizer() -> CLIPTokenizer:
    return CLIPTokenizer(OPEN_CLIP_VOCAB)


def cached_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------------------ tokenizer


def test_tokenizer_through_the_download_path_equals_open_clip(github, tmp_path):
    shutil.copyfile(OPEN_CLIP_VOCAB, github)
    tokenizer = clip_tokenizer()
    [cached] = cached_files(tmp_path / "cache")
    assert cached.name == VOCAB_FILENAME and hashlib.sha256(cached.read_bytes()).hexdigest() == VOCAB_SHA256
    github.unlink()  # the second call reads the cache, not the server
    assert clip_tokenizer() is tokenizer
    assert (tokenizer.vocab_size, tokenizer.sot_id, tokenizer.eot_id) == (49408, 49406, 49407)

    reference = open_clip.tokenizer.SimpleTokenizer()
    for text in [*TRICKY, LONG]:
        assert tokenizer.encode(text) == reference.encode(text), text
    tokens = tokenizer(TRICKY)
    assert tokens.dtype == torch.long and tokens.shape == (len(TRICKY), 77)
    assert torch.equal(tokens, open_clip.tokenize(TRICKY))
    assert tokenizer("a photo of a cat")[0, :8].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407, 0]
    assert tokenizer("")[0, :3].tolist() == [49406, 49407, 0]


def test_too_long_text_raises_unless_truncated(tokenizer):
    with pytest.raises(InputError, match="'a photo of a photo of .*92 CLIP tokens.*truncate=True"):
        tokenizer(["cat", LONG])
    truncated = tokenizer(["cat", LONG], truncate=True)
    assert torch.equal(truncated, open_clip.tokenize(["cat", LONG]))  # open_clip keeps EOT last, like OpenAI's
    assert truncated[1, -1] == 49407 and (truncated[1] != 0).all()
    exact = "a " * 75  # 75 words + SOT + EOT = 77: fits without truncation
    assert torch.equal(tokenizer(exact), open_clip.tokenize(exact))


def test_wrong_vocab_bytes_are_rejected_and_not_cached(github, tmp_path):
    github.write_bytes(OPEN_CLIP_VOCAB.read_bytes()[:-1000])  # a truncated download
    with pytest.raises(ChecksumError, match=VOCAB_SHA256):
        clip_tokenizer()
    assert cached_files(tmp_path / "cache") == []


def test_local_vocab_file_works_offline_and_bad_files_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("VFE_HUB_GITHUB_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: no download may happen
    monkeypatch.setenv("VFE_HUB_CACHE", str(tmp_path / "cache"))
    local = tmp_path / "vocab.txt.gz"
    shutil.copyfile(OPEN_CLIP_VOCAB, local)
    tokenizer = clip_tokenizer(local)
    assert clip_tokenizer(str(local)) is tokenizer
    assert tokenizer.encode("speaker_(stereo_equipment)") == [4914, 36951, 17400, 318, 6893, 264]
    assert not (tmp_path / "cache").exists()
    with pytest.raises(InputError, match="missing.gz does not exist"):
        clip_tokenizer(tmp_path / "missing.gz")
    (tmp_path / "plain.txt").write_text("#version: 0.2\na b\n")
    with pytest.raises(InputError, match="not a gzipped"):
        clip_tokenizer(tmp_path / "plain.txt")
    (tmp_path / "short.gz").write_bytes(gzip.compress(b"#version: 0.2\na b\n"))
    with pytest.raises(InputError, match="BPE merges"):
        clip_tokenizer(tmp_path / "short.gz")


# ------------------------------------------------------------------------------------------------ text tower


def perturbed(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` in eval mode with its vectors (LayerNorm scales, zero-initialised biases) moved off their init,
    so that a swapped or mis-mapped one shows; the matrices are random already."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn(p.shape, generator=generator) * 0.1)
    return model.eval()


def layer_norm(x: torch.Tensor, state: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * state[f"{name}.weight"] + state[f"{name}.bias"]


def reference_text_features(state: dict[str, torch.Tensor], heads: int, tokens: torch.Tensor,
                            context: torch.Tensor | None = None) -> torch.Tensor:
    """CLIP's text tower in float64 with plain matmuls, an explicit -inf causal mask and QuickGELU: ``(N, D)``."""
    s = {k: v.double() for k, v in state.items()}
    x = s["token_embedding.weight"][tokens]
    if context is not None:
        x[:, 1:1 + len(context)] = context.double()
    n, length, width = x.shape
    x = x + s["positional_embedding"][:length]
    mask = torch.full((length, length), float("-inf"), dtype=torch.float64).triu(1)
    layers = len({k.split(".")[2] for k in s if k.startswith("transformer.resblocks.")})
    for i in range(layers):
        p = f"transformer.resblocks.{i}."
        h = layer_norm(x, s, p + "ln_1")
        q, k, v = (h @ s[p + "attn.in_proj_weight"].T + s[p + "attn.in_proj_bias"]).chunk(3, dim=-1)
        q, k, v = (t.reshape(n, length, heads, -1).transpose(1, 2) for t in (q, k, v))
        weights = torch.softmax(q @ k.transpose(-1, -2) / (width // heads) ** 0.5 + mask, dim=-1)
        attended = (weights @ v).transpose(1, 2).reshape(n, length, width)
        x = x + attended @ s[p + "attn.out_proj.weight"].T + s[p + "attn.out_proj.bias"]
        h = layer_norm(x, s, p + "ln_2") @ s[p + "mlp.c_fc.weight"].T + s[p + "mlp.c_fc.bias"]
        h = h * torch.sigmoid(1.702 * h)
        x = x + h @ s[p + "mlp.c_proj.weight"].T + s[p + "mlp.c_proj.bias"]
    x = layer_norm(x, s, "ln_final")
    return x[torch.arange(n), tokens.argmax(dim=1)] @ s["text_projection"]


def test_key_names_and_shapes_are_openai_clips():
    expected = {"token_embedding.weight": (49408, 512), "positional_embedding": (77, 512),
                "ln_final.weight": (512,), "ln_final.bias": (512,), "text_projection": (512, 512)}
    for i in range(12):
        p = f"transformer.resblocks.{i}."
        expected.update({p + "ln_1.weight": (512,), p + "ln_1.bias": (512,), p + "attn.in_proj_weight": (1536, 512),
                         p + "attn.in_proj_bias": (1536,), p + "attn.out_proj.weight": (512, 512),
                         p + "attn.out_proj.bias": (512,), p + "ln_2.weight": (512,), p + "ln_2.bias": (512,),
                         p + "mlp.c_fc.weight": (2048, 512), p + "mlp.c_fc.bias": (2048,),
                         p + "mlp.c_proj.weight": (512, 2048), p + "mlp.c_proj.bias": (512,)})
    got = {k: tuple(v.shape) for k, v in CLIPTextEncoder().state_dict().items()}
    assert got == expected


@pytest.mark.slow
def test_text_tower_equals_float64_reference(tokenizer):
    torch.manual_seed(0)
    model = perturbed(CLIPTextEncoder(**SMALL))
    tokens = tokenizer(["a photo of a cat", "", "speaker_(stereo_equipment)", LONG], truncate=True)
    expected = reference_text_features(model.state_dict(), SMALL["heads"], tokens)
    with torch.no_grad():
        got = model(tokens)
        assert got.shape == (4, SMALL["embed_dim"]) and got.dtype == torch.float32
        torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-5 * expected.abs().max().item())
        # in float64 only summation orders differ
        torch.testing.assert_close(model.double()(tokens), expected, rtol=0, atol=1e-12 * expected.abs().max().item())

    model = perturbed(CLIPTextEncoder())  # ViT-B/32's tower, on rows cut to 16 tokens to keep the reference fast
    tokens = tokenizer(["a photo of a cat", "", "speaker_(stereo_equipment)"], context_length=16)
    expected = reference_text_features(model.state_dict(), 8, tokens)
    with torch.no_grad():
        got = model(tokens)
    assert got.shape == (3, 512)
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-4 * expected.abs().max().item())


def test_context_path_equals_float64_reference(tokenizer):
    torch.manual_seed(1)
    model = perturbed(CLIPTextEncoder(**SMALL))
    tokens = tokenizer([detpro_prompt(n) for n in ("aerosol_can", "speaker_(stereo_equipment)", "cat")])
    x_id = tokenizer.encode("X")[0]
    assert (tokens[:, 1:9] == x_id).all() and (tokens[:, 9] != x_id).all()  # the eight placeholders sit at 1..8
    context = torch.randn(8, SMALL["width"]) * 0.1
    expected = reference_text_features(model.state_dict(), SMALL["heads"], tokens, context)
    with torch.no_grad():
        got, plain = model(tokens, context), model(tokens)
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-5 * expected.abs().max().item())
    assert (got - plain).abs().max() > 1e-2  # the context does replace the placeholders' embeddings
    context.requires_grad_(True)
    model(tokens, context).sum().backward()
    assert context.grad is not None and context.grad.abs().sum() > 0
    with pytest.raises(InputError, match="context must have shape"):
        model(tokens, torch.zeros(8, SMALL["width"] + 1))
    with pytest.raises(InputError, match="context must have shape"):
        model(tokenizer(["cat"]), context)  # no room for eight context vectors before EOT


@pytest.mark.slow
def test_text_tower_equals_open_clip_quickgelu():
    torch.manual_seed(2)
    reference = perturbed(open_clip.create_model("ViT-B-32-quickgelu"))  # random init: nothing is downloaded
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("visual.") and k != "logit_scale"}
    ours = CLIPTextEncoder()
    ours.load_state_dict(state, strict=True)  # every text key of a CLIP checkpoint, no other
    tokens = open_clip.tokenize(["a photo of a cat", "aerosol can", "", "There is one large dog in the picture"])
    with torch.no_grad():
        expected, got = reference.encode_text(tokens), ours.eval()(tokens)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5 * expected.abs().max().item())
    for block in reference.transformer.resblocks:  # the comparison sees the activation: nn.GELU is not CLIP's
        block.mlp.gelu = nn.GELU()
    with torch.no_grad():
        assert (reference.encode_text(tokens) - got).abs().max() > 1e-3 * expected.abs().max()  # 100x the tolerance


# ------------------------------------------------------------------------------------------------ class embeddings


NAMES = ["aerosol_can", "speaker_(stereo_equipment)", "person's dog", "crème brûlée"]


def test_prompt_texts():
    assert len(VILD_TEMPLATES) == len(set(VILD_TEMPLATES)) == 74
    assert VILD_TEMPLATES[:3] == ("This is a {}", "There is a {}", "a photo of a {} in the scene")
    assert VILD_TEMPLATES[-1] == "This is one large {} in the picture"
    assert all(t.count("{}") == 1 for t in VILD_TEMPLATES)
    assert vild_prompts("aerosol_can")[2] == "a photo of a aerosol_can in the scene"
    assert detpro_name("speaker_(stereo_equipment)") == "speaker stereo equipment"
    assert detpro_prompt("aerosol_can") == "X X X X X X X X aerosol can."
    assert detpro_prompt("bow_(weapon)", 2) == "X X bow weapon."


@pytest.mark.slow
def test_class_embeddings_detpro_and_vild_modes(tokenizer):
    torch.manual_seed(3)
    encoder = perturbed(CLIPTextEncoder(**SMALL))
    contexts = torch.randn(5, 8, SMALL["width"]) * 0.1
    detpro = class_embeddings(encoder, tokenizer, NAMES, contexts=contexts, batch_size=3)
    vild = class_embeddings(encoder, tokenizer, NAMES, batch_size=64)
    for got in (detpro, vild):
        assert got.shape == (4, SMALL["embed_dim"]) and got.dtype == torch.float32
        torch.testing.assert_close(got.norm(dim=1), torch.ones(4))
    assert (detpro - vild).abs().max() > 0.1

    cleaned = ["aerosol can", "speaker stereo equipment", "person's dog", "crème brûlée"]
    tokens = tokenizer([f"X X X X X X X X {name}." for name in cleaned])
    with torch.no_grad():
        expected = F.normalize(sum(F.normalize(encoder(tokens, c), dim=-1) for c in contexts), dim=-1)
        torch.testing.assert_close(detpro, expected, rtol=0, atol=1e-6)
        rows = [F.normalize(encoder(tokenizer([t.format(name) for t in VILD_TEMPLATES])), dim=-1).mean(0)
                for name in NAMES]
        torch.testing.assert_close(vild, F.normalize(torch.stack(rows), dim=-1), rtol=0, atol=1e-6)
        one = class_embeddings(encoder, tokenizer, NAMES, contexts=contexts[0])  # a single (K, width) context
        torch.testing.assert_close(one, F.normalize(encoder(tokens, contexts[0]), dim=-1), rtol=0, atol=1e-6)


def test_class_embeddings_are_cached_atomically(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("VFE_HUB_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "cache" / "embeddings"
    encoder = perturbed(CLIPTextEncoder(**SMALL))
    calls = []
    encoder.register_forward_hook(lambda *args: calls.append(1))
    contexts = torch.randn(5, 8, SMALL["width"])

    def run(**kwargs) -> torch.Tensor:
        calls.clear()
        return class_embeddings(encoder, tokenizer, kwargs.pop("names", NAMES), weights_id="w1", **kwargs)

    first = run(contexts=contexts)
    assert len(calls) == 5 and len(cached_files(folder)) == 1  # no temporary file is left beside it
    [cache_file] = cached_files(folder)
    assert cache_file.suffix == ".safetensors"
    assert torch.equal(run(contexts=contexts), first) and calls == []  # read from disk, the encoder did not run
    run(contexts=contexts + 1e-3)
    run(contexts=contexts, names=NAMES[::-1])
    run()
    assert calls and len(cached_files(folder)) == 4  # other contexts, order and mode are other vocabularies
    class_embeddings(encoder, tokenizer, ["new"], contexts=contexts)
    assert len(cached_files(folder)) == 4  # without weights_id nothing is stored

    def broken_save(tensors, path, metadata=None):
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(embeddings_module, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        run(names=["cat", "dog"])
    assert len(cached_files(folder)) == 4  # an interrupted write leaves nothing a later call would trust


@pytest.mark.parametrize("names, match", [
    ([], "non-empty list"),
    ("cat", "non-empty list"),
    (["cat", ""], r"non-empty strings; these are not: \[''\]"),
    (["cat", "  ", 3], r"these are not: \['  ', 3\]"),
    (["cat", "dog", "cat", "dog", "bird"], r"more than once: \['cat', 'dog'\]"),
    (["cat", "x " * 80], "Class name 'x x x .* too long.* 85 CLIP tokens"),
])
def test_bad_names_are_named(tokenizer, names, match):
    encoder = CLIPTextEncoder(**SMALL)
    with pytest.raises(InputError, match=match):
        class_embeddings(encoder, tokenizer, names)


def test_bad_contexts_are_rejected(tokenizer):
    encoder = CLIPTextEncoder(**SMALL)
    for contexts in (torch.zeros(5, 8, SMALL["width"] + 1), torch.zeros(SMALL["width"]), torch.zeros(0, 8, 32)):
        with pytest.raises(InputError, match="contexts must have shape"):
            class_embeddings(encoder, tokenizer, ["cat"], contexts=contexts)
