"""Weights of the extractive minutes' sentence scorer (core/minutes/scorer.py).

Written by bench/train_minutes_scorer.py from QMSum train meetings and their human general
summaries (5-fold cross-validation by meeting chose the target, ridge strength, summary length,
redundancy penalty and coverage bonus); rerun the command in MADE to reproduce. Do not edit.
"""

MADE = {'by': 'bench/train_minutes_scorer.py --limit 55',
 'data': 'qmsum/train.jsonl general summaries',
 'meetings': 55,
 'sentences': 11017,
 'left_out': [],
 'target': 'all',
 'ridge': 1.0,
 'cross_validated_rouge1_f': 0.3}

WEIGHTS = {'features': ['position', 'position_sq', 'log_words', 'info', 'noise', 'centrality',
              'topic_centrality', 'frequency', 'speaker_share', 'turn_words', 'content_share',
              'pronoun_share', 'first_person', 'we', 'number'],
 'mean': [0.46006, 0.297336, 2.791921, 0.0, 0.17757, 0.0, -0.0, -0.0, 0.294616, 4.028662, 0.307413,
          0.113569, 0.027139, 0.027109, 0.021966],
 'scale': [0.292711, 0.292706, 0.477936, 1.0, 0.115511, 0.999999, 1.0, 0.999999, 0.171426, 1.08456,
           0.126314, 0.080623, 0.047891, 0.04678, 0.146582],
 'coef': [-0.026738, 0.022223, 0.009278, 0.002781, -0.010715, 0.012105, 0.004504, 0.019168,
          0.003381, 0.009132, -0.002751, -0.017604, -0.014427, -0.012995, -0.003216],
 'intercept': 0.29251813888549805,
 'summary_words': 160,
 'redundancy': 2.0,
 'coverage': 0.0}
