"""Text-generation metrics of the field, computed by their reference tools on detokenized text.

- BLEU and chrF: sacrebleu's corpus scores (13a tokenization, exactly as `sacrebleu` on the command
  line reports them), 0-100.
- ROUGE-1/2/L and ROUGE-Lsum: rouge-score with the Porter stemmer, F-measure averaged over
  documents, 0-100 here as in most papers (rouge-score itself gives 0-1).
"""

import numpy as np


def bleu(hypotheses, references):
    """Corpus BLEU (sacrebleu defaults) of detokenized `hypotheses` against one reference each."""
    import sacrebleu

    _check(hypotheses, references)
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def chrf(hypotheses, references):
    """Corpus chrF (sacrebleu defaults: character 6-grams, beta 2)."""
    import sacrebleu

    _check(hypotheses, references)
    return float(sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score)


def translation_scores(hypotheses, references):
    return {"bleu": bleu(hypotheses, references), "chrf": chrf(hypotheses, references)}


def rouge(hypotheses, references, keys=("rouge1", "rouge2", "rougeL", "rougeLsum")):
    """Mean ROUGE F-measures (x100) with stemming; ROUGE-Lsum splits sentences on newlines."""
    from rouge_score import rouge_scorer

    _check(hypotheses, references)
    scorer = rouge_scorer.RougeScorer(list(keys), use_stemmer=True)
    totals = {key: [] for key in keys}
    for hypothesis, reference in zip(hypotheses, references):
        scores = scorer.score(reference, hypothesis)  # (target, prediction)
        for key in keys:
            totals[key].append(scores[key].fmeasure)
    return {key: 100.0 * float(np.mean(values)) if values else 0.0 for key, values in totals.items()}


def _check(hypotheses, references):
    if len(hypotheses) != len(references):
        raise ValueError(
            f"One reference per hypothesis. Received: {len(hypotheses)} hypotheses, {len(references)} references"
        )
