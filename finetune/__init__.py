"""Fine-tuning (LoRA / QLoRA): not built yet, see the issue tracker."""
