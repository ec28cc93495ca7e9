"""Parity: does an exported artefact compute what the PyTorch student computes, on validation data?"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from kdistill.deploy.errors import ParityError
from kdistill.deploy.formats import Runner


@dataclass
class ParityReport:
    artefact: str
    samples: int
    max_abs_diff: float  # largest |logit difference| over every sample and output
    top1_agreement: float  # share of predictions where artefact and student pick the same class (token)
    mean_cosine: float  # of the output rows; the closeness measure of embedding models
    int8: bool

    def as_dict(self) -> dict:
        return asdict(self)


def compare_outputs(student: nn.Module, runner: Runner, dataset: Dataset, input_names: tuple[str, ...],
                    samples: int, artefact: str, int8: bool, batch_size: int = 64) -> ParityReport:
    """Run both on the first ``samples`` items of ``dataset`` and compare their outputs."""
    subset = Subset(dataset, range(min(samples, len(dataset))))
    worst, agree, predictions, cosines = 0.0, 0, 0, []
    for batch in DataLoader(subset, batch_size=batch_size, shuffle=False):
        tensors = tuple(batch[name] for name in input_names)
        with torch.no_grad():
            expected = student(*tensors).float()
        got = runner(tensors).float()
        worst = max(worst, float((expected - got).abs().max()))
        agree += int((expected.argmax(-1) == got.argmax(-1)).sum())
        predictions += expected.argmax(-1).numel()
        cosines.append(F.cosine_similarity(expected.flatten(0, -2), got.flatten(0, -2), dim=-1))
    return ParityReport(artefact, len(subset), worst, agree / max(predictions, 1),
                        float(torch.cat(cosines).mean()), int8)


def check_parity(report: ParityReport, atol: float, min_agreement: float, embedding: bool = False) -> None:
    """Float artefacts: every |difference| <= atol. int8 ones: top-1 agreement (embeddings: mean cosine) high enough.

    Raises ParityError with the numbers; the caller then does not publish the file.
    """
    numbers = (f"max |logit diff| {report.max_abs_diff:.3g}, top-1 agreement {100 * report.top1_agreement:.2f}%, "
               f"mean cosine {report.mean_cosine:.4f} on {report.samples} validation samples")
    if not report.int8 and report.max_abs_diff > atol:
        raise ParityError(f"{report.artefact} does not match the PyTorch student: {numbers} (tolerance {atol:g}); "
                          "the file was not published")
    closeness = report.mean_cosine if embedding else report.top1_agreement
    if report.int8 and closeness < min_agreement:
        measure = "mean cosine" if embedding else "top-1 agreement"
        raise ParityError(f"int8 {report.artefact} drifts from the float student: {numbers} ({measure} must be >= "
                          f"{min_agreement:g}); the file was not published")
