"""Class labels for conditional networks: the label embedding, the label check, and label dropout.

A conditional network built with num_classes = C > 0 reads one label per sequence, an int in [0, C]; the index C
is the NULL label ("no class"), which is what classifier-free guidance evaluates for the unconditional model
(Ho & Salimans 2022; Nisonoff et al. 2024). Training replaces each label by the null label with a probability p
(`drop_labels`), so that one network learns both p(x | c) and p(x).

The embedding table has C + 1 rows and starts at zero: a conditional network at initialisation computes exactly
what the unconditional network with the same other weights computes, for every label (a pretrained unconditional
checkpoint loaded into it with strict=False starts where it ended).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def check_num_classes(num_classes: int) -> int:
    """Return num_classes, or raise ValueError unless it is an int >= 0 (0: an unconditional network)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be an int >= 0 (0 builds the unconditional network), got {num_classes!r}")
    return num_classes


def check_labels(label: Tensor, num_classes: int, batch_size: int, name: str = "label") -> None:
    """Raise TypeError/ValueError naming `name` unless it is a (batch_size,) long tensor in [0, num_classes]
    (num_classes is the null label)."""
    if not isinstance(label, Tensor) or label.dtype != torch.long:
        kind = label.dtype if isinstance(label, Tensor) else type(label).__name__
        raise TypeError(f"{name} must be a (batch,) torch.long tensor of class ids, got {kind}; pass {name}.long()")
    if label.shape != (batch_size,):
        raise ValueError(
            f"{name} must have shape (batch,) = ({batch_size},), one class per sequence, got {tuple(label.shape)}"
        )
    if not torch.compiler.is_compiling() and label.numel() and bool(((label < 0) | (label > num_classes)).any()):
        raise ValueError(
            f"{name} must hold class ids in [0, {num_classes}] ({num_classes} is the null label), got values in "
            f"[{int(label.min())}, {int(label.max())}]; build the network with a larger num_classes"
        )


class LabelEmbedding(nn.Module):
    """A (num_classes + 1, dim) table, zero at initialisation; row num_classes is the null label.

    forward(label, batch_size): label (B,) long in [0, num_classes] or None (the null label for every sequence).
    Returns (B, dim).
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = check_num_classes(num_classes)
        self.table = nn.Embedding(num_classes + 1, dim)
        nn.init.zeros_(self.table.weight)

    @property
    def null_label(self) -> int:
        """The index of the null label: num_classes."""
        return self.num_classes

    def forward(self, label: Tensor | None, batch_size: int) -> Tensor:
        if label is None:
            return self.table.weight[self.null_label].expand(batch_size, -1)
        check_labels(label, self.num_classes, batch_size)
        return self.table(label)


def label_vector(embedding: LabelEmbedding | None, label: Tensor | None, batch_size: int) -> Tensor | None:
    """The (B, dim) label embedding of a network, or None for an unconditional network (embedding None), which
    refuses a label on one line."""
    if embedding is not None:
        return embedding(label, batch_size)
    if label is not None:
        raise ValueError(
            "label was given to an unconditional network (num_classes=0); pass label=None, or build the network "
            "with num_classes > 0"
        )
    return None


def drop_labels(labels: Tensor, num_classes: int, probability: float, generator: torch.Generator | None) -> Tensor:
    """Label dropout for classifier-free guidance training: each label independently replaced by the null label
    num_classes with probability `probability` (one float64 uniform per label from `generator`).

    labels: (B,) long in [0, num_classes]. Returns a new (B,) long tensor; probability 0 returns a copy.
    """
    check_num_classes(num_classes)
    if num_classes == 0:
        raise ValueError("num_classes must be >= 1 for label dropout (there is no class to drop)")
    if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be a number in [0, 1], the share of labels dropped, got {probability!r}")
    if not isinstance(labels, Tensor) or labels.dim() != 1:
        raise ValueError(f"labels must be a (batch,) long tensor, got {getattr(labels, 'shape', type(labels))}")
    check_labels(labels, num_classes, labels.shape[0], name="labels")
    device = generator.device if generator is not None else labels.device
    u = torch.rand(labels.shape, dtype=torch.float64, device=device, generator=generator).to(labels.device)
    return torch.where(u < probability, num_classes, labels)
