"""Finding and loading local LLMs (default, HF folder, GGUF file, HF cache, adapter), quantized or
not: shared by generation (rag.generation) and fine-tuning (ragtune.finetune)."""
