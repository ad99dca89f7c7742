"""Prompt texts for CLIP class embeddings: ViLD's manual templates and DetPro's learned-context prompt."""
from __future__ import annotations

#: The manual prompt ensemble of ViLD* (DetPro's ``mmdet/models/roi_heads/class_name.py`` ``template_list``, 74
#: templates; OADP's ``oadp/prompts/vild.py`` lists the same), each formatted with the raw class name.
VILD_TEMPLATES: tuple[str, ...] = (
    "This is a {}",
    "There is a {}",
    "a photo of a {} in the scene",
    "a photo of a small {} in the scene",
    "a photo of a medium {} in the scene",
    "a photo of a large {} in the scene",
    "a photo of a {}",
    "a photo of a small {}",
    "a photo of a medium {}",
    "a photo of a large {}",
    "This is a photo of a {}",
    "This is a photo of a small {}",
    "This is a photo of a medium {}",
    "This is a photo of a large {}",
    "There is a {} in the scene",
    "There is the {} in the scene",
    "There is one {} in the scene",
    "This is a {} in the scene",
    "This is the {} in the scene",
    "This is one {} in the scene",
    "This is one small {} in the scene",
    "This is one medium {} in the scene",
    "This is one large {} in the scene",
    "There is a small {} in the scene",
    "There is a medium {} in the scene",
    "There is a large {} in the scene",
    "There is a {} in the photo",
    "There is the {} in the photo",
    "There is one {} in the photo",
    "There is a small {} in the photo",
    "There is the small {} in the photo",
    "There is one small {} in the photo",
    "There is a medium {} in the photo",
    "There is the medium {} in the photo",
    "There is one medium {} in the photo",
    "There is a large {} in the photo",
    "There is the large {} in the photo",
    "There is one large {} in the photo",
    "There is a {} in the picture",
    "There is the {} in the picture",
    "There is one {} in the picture",
    "There is a small {} in the picture",
    "There is the small {} in the picture",
    "There is one small {} in the picture",
    "There is a medium {} in the picture",
    "There is the medium {} in the picture",
    "There is one medium {} in the picture",
    "There is a large {} in the picture",
    "There is the large {} in the picture",
    "There is one large {} in the picture",
    "This is a {} in the photo",
    "This is the {} in the photo",
    "This is one {} in the photo",
    "This is a small {} in the photo",
    "This is the small {} in the photo",
    "This is one small {} in the photo",
    "This is a medium {} in the photo",
    "This is the medium {} in the photo",
    "This is one medium {} in the photo",
    "This is a large {} in the photo",
    "This is the large {} in the photo",
    "This is one large {} in the photo",
    "This is a {} in the picture",
    "This is the {} in the picture",
    "This is one {} in the picture",
    "This is a small {} in the picture",
    "This is the small {} in the picture",
    "This is one small {} in the picture",
    "This is a medium {} in the picture",
    "This is the medium {} in the picture",
    "This is one medium {} in the picture",
    "This is a large {} in the picture",
    "This is the large {} in the picture",
    "This is one large {} in the picture",
)
#: The word DetPro's prompt text holds in place of each learned context vector.
CONTEXT_PLACEHOLDER = "X"


def detpro_name(name: str) -> str:
    """A class name as DetPro's prompt learner spells it: parentheses removed, ``_`` -> space
    (``"speaker_(stereo_equipment)"`` -> ``"speaker stereo equipment"``)."""
    return name.replace("(", "").replace(")", "").replace("_", " ")


def detpro_prompt(name: str, num_context: int = 8) -> str:
    """DetPro's prompt text ``"X X X X X X X X {name}."`` for a raw class name; the ``num_context`` placeholders
    are token positions ``1..num_context`` whose embeddings the learned context replaces."""
    return " ".join([CONTEXT_PLACEHOLDER] * num_context + [detpro_name(name)]) + "."


def vild_prompts(name: str) -> list[str]:
    """The 74 ViLD prompt texts of a raw class name (ViLD* keeps underscores and parentheses)."""
    return [template.format(name) for template in VILD_TEMPLATES]
