"""Fine-tuning: LoRA and QLoRA adapters (`train`), merging them into a standalone model (`merge`), and
the base-vs-tuned report (`compare`). Configs live in `finetune.config`, training data in `finetune.data`.
"""
