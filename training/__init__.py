"""Training: datasets from feedback, LoRA fine-tuning and evaluation of candidate models.

Built by the feedback and retraining issues; it uses core/ and is never imported by it.
"""
