"""CLIP text side of open-vocabulary detection: the BPE tokenizer, prompt texts and class-embedding matrices."""
from .embeddings import class_embeddings, check_names
from .prompts import VILD_TEMPLATES, detpro_name, detpro_prompt, vild_prompts
from .tokenizer import CLIPTokenizer, clip_tokenizer

__all__ = ["CLIPTokenizer", "VILD_TEMPLATES", "check_names", "class_embeddings", "clip_tokenizer", "detpro_name",
           "detpro_prompt", "vild_prompts"]
