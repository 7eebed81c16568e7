"""The evaluation library that the commands, the benchmarks and the training module's validation share.

- `load_trained`, `TrainedModel` (evaluation/restore.py): a trained model for inference, without Lightning.
- bounds (evaluation/bounds.py): the seeded negative-ELBO estimate of whole sequences, the prior term, the
  ratio estimator of bits/token and its standard error.
- `evaluate` (evaluation/likelihood.py): the bound of a model on a text, with the fixed-order likelihood.
- generation (evaluation/generation.py, evaluation/prompts.py, evaluation/windows.py): samplers by name, prompts as
  templates, samples of any length (whole, block by block, semi-autoregressive windows; `writing_plan`).
- judging (evaluation/judge.py, evaluation/generative_perplexity.py): generative perplexity under an AR judge.
- `training_data` (evaluation/training_data.py): the blocks a model was trained on.
- guidance (evaluation/guidance.py): the guided model of `lightning sample --label NAME --guidance GAMMA`; the class
  judge (evaluation/class_judge.py): a naive Bayes of the training blocks and their labels.
"""

from evaluation.bounds import RatioEstimate, prior_nats, ratio_estimate, sequence_negative_elbo
from evaluation.class_judge import ClassVerdict, judge_class, naive_bayes_judge
from evaluation.generation import Samples, build_sampler, draw_samples, generate_samples, resolve_sampler
from evaluation.generative_perplexity import GenerativePerplexity, generative_perplexity
from evaluation.guidance import Guidance, guided_model, resolve_label
from evaluation.judge import JudgeReport, judge_file, judge_model, judge_tokens
from evaluation.likelihood import Evaluation, evaluate
from evaluation.restore import TrainedModel, load_trained
from evaluation.training_data import training_data, validation_blocks

__all__ = [
    "ClassVerdict",
    "Evaluation",
    "GenerativePerplexity",
    "Guidance",
    "JudgeReport",
    "RatioEstimate",
    "Samples",
    "TrainedModel",
    "build_sampler",
    "draw_samples",
    "evaluate",
    "generate_samples",
    "generative_perplexity",
    "guided_model",
    "judge_class",
    "judge_file",
    "judge_model",
    "judge_tokens",
    "load_trained",
    "naive_bayes_judge",
    "prior_nats",
    "ratio_estimate",
    "resolve_label",
    "resolve_sampler",
    "sequence_negative_elbo",
    "training_data",
    "validation_blocks",
]
