"""Fine-tuning: training data, the LoRA/QLoRA loop, checkpoints, merging and the compare report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune import GeneratorConfig, InputError, LocalLLM
from ragtune.finetune.compare import CompareConfig, Measurement, compare, perplexity, table
from ragtune.finetune.config import CONFIG_FILE, FinetuneConfig
from ragtune.finetune.data import (
    IGNORE,
    load_qa_jsonl,
    load_store_chunks,
    record_messages,
    split,
    tokenize_chat,
)
from ragtune.finetune.merge import merge
from ragtune.finetune.train import CHECKPOINT, finetune, train
from ragtune.rag.models.loading import choose_device, cuda_available, load_tokenizer
from ragtune.rag.models.resolve import resolve_model

QA = [
    {"question": f"what does LoRA learn {i} ?", "answer": "LoRA learns a low-rank update"} for i in range(16)
]


def interrupt_at(stop: int):
    """An on_step callback that stops training like Ctrl-C does, after step `stop`."""

    def on_step(step: int, total: int, loss: float) -> None:
        if step == stop:
            raise KeyboardInterrupt

    return on_step


def fast(tiny_llm_dir: Path, **overrides) -> FinetuneConfig:
    """Settings that make a tiny model learn visibly within a dozen steps."""
    values = dict(
        model=str(tiny_llm_dir),
        lr=1e-2,
        warmup_steps=0,
        max_steps=12,
        batch_size=4,
        eval_every=4,
        save_every=100,
        seed=0,
        init_lora_weights=False,
    )
    return FinetuneConfig(**{**values, **overrides})


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


@pytest.fixture
def qa_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "qa.jsonl", QA)


@pytest.fixture(scope="module")
def tokenizer(tiny_llm_dir: Path):
    return load_tokenizer(str(tiny_llm_dir))


@pytest.mark.parametrize(
    "record",
    [
        {"question": "q ?", "answer": "a"},
        {"instruction": "q ?", "input": "ctx", "output": "a"},
        {"prompt": "q ?", "completion": "a"},
        {"messages": [{"role": "user", "content": "q ?"}, {"role": "assistant", "content": "a"}]},
    ],
)
def test_every_supported_record_shape_becomes_a_chat_ending_in_the_answer(record):
    messages = record_messages(record)
    assert messages[-1] == {"role": "assistant", "content": "a"} and messages[0]["role"] == "user"


def test_loss_covers_the_answer_only(tokenizer):
    example = tokenize_chat(
        record_messages({"question": "what is LoRA ?", "answer": "low-rank update"}), tokenizer, 256
    )
    learned = [t for t, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE]
    assert tokenizer.decode(learned, skip_special_tokens=True).split() == ["low", "-", "rank", "update"]
    assert example.labels[0] == IGNORE


def test_bad_jsonl_lines_are_reported_with_their_numbers(tmp_path: Path, tokenizer):
    path = write_jsonl(tmp_path / "qa.jsonl", [QA[0], "{not json", {"question": "q"}, QA[1], {"foo": 1}])
    with pytest.raises(InputError) as error:
        load_qa_jsonl(path, tokenizer, 256)
    message = str(error.value)
    assert "3 bad lines" in message and "line 2:" in message and "line 3:" in message and "line 5:" in message
    assert "--skip-bad-lines" in message


def test_a_deeply_nested_line_is_a_bad_line_with_its_number(tmp_path: Path, tokenizer):
    path = write_jsonl(tmp_path / "qa.jsonl", [QA[0], "[" * 100_000, QA[1]])
    with pytest.raises(InputError, match=r"1 bad lines \(line 2: nested too deeply"):
        load_qa_jsonl(path, tokenizer, 256)


@pytest.mark.parametrize("content", [None, 42, ["a"]])
def test_a_message_whose_content_is_not_text_is_a_bad_line(tmp_path: Path, tokenizer, content):
    chat = {"messages": [{"role": "user", "content": "q ?"}, {"role": "assistant", "content": content}]}
    path = write_jsonl(tmp_path / "qa.jsonl", [QA[0], chat])
    with pytest.raises(InputError, match="line 2: message 2 .assistant.: 'content' must be a string"):
        load_qa_jsonl(path, tokenizer, 256)


def test_skip_bad_lines_trains_on_the_rest_and_keeps_the_list(tmp_path: Path, tokenizer):
    path = write_jsonl(tmp_path / "qa.jsonl", [QA[0], "{not json", QA[1]])
    dataset = load_qa_jsonl(path, tokenizer, 256, skip_bad_lines=True)
    assert len(dataset.examples) == 2 and [p.split(":")[0] for p in dataset.problems] == ["line 2"]


def test_a_file_with_no_examples_is_an_error(tmp_path: Path, tokenizer):
    with pytest.raises(InputError, match="no training examples"):
        load_qa_jsonl(write_jsonl(tmp_path / "qa.jsonl", [""]), tokenizer, 256)


def test_store_chunks_become_causal_lm_examples(rag, corpus, tokenizer):
    rag.ingest(corpus, progress=False)
    dataset = load_store_chunks(rag.folder, tokenizer, 64)
    assert dataset.kind == "text" and len(dataset.examples) == rag.status()["chunks"]
    assert all(e.labels == e.input_ids for e in dataset.examples)


def test_store_chunks_of_a_missing_index_say_what_to_do(tmp_path: Path, tokenizer):
    with pytest.raises(InputError, match="ragtune ingest"):
        load_store_chunks(tmp_path / "nothing", tokenizer, 64)


def test_split_is_seeded_and_holds_out_at_least_one(tokenizer):
    examples = [tokenize_chat(record_messages(r), tokenizer, 64) for r in QA[:5]]
    train_a, held_a = split(examples, 0.1, seed=3)
    train_b, held_b = split(examples, 0.1, seed=3)
    assert len(held_a) == 1 and len(train_a) == 4
    assert [e.input_ids for e in held_a] == [e.input_ids for e in held_b]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"r": 0}, "r"),
        ({"dropout": 1.0}, "dropout"),
        ({"quantization": "int8"}, "quantization"),
        ({"init_lora_weights": "magic"}, "init_lora_weights"),
        ({"target_modules": "q_proj"}, "target_modules"),
        ({"init_lora_weights": "loftq", "quantization": "nf4"}, "loftq"),
        ({"init_lora_weights": "pissa", "quantization": "nf4"}, "pissa.*full-precision"),
    ],
)
def test_bad_finetune_config_names_the_field(overrides, field):
    with pytest.raises(InputError, match=field):
        FinetuneConfig(**overrides)


def test_lora_training_lowers_the_eval_loss(tiny_llm_dir: Path, qa_file: Path, tmp_path: Path):
    result = finetune(
        fast(tiny_llm_dir, quantization="none"), tmp_path / "adapter", data=qa_file, progress=False
    )
    device = choose_device("auto")
    assert result.steps == 12 and result.quantization == "none" and result.device == device
    assert result.optimizer == ("paged_adamw_32bit" if device == "cuda" else "adamw_torch")
    assert result.final_eval_loss < result.first_eval_loss - 0.1
    assert result.losses[-1] < result.losses[0]


def test_adapter_folder_carries_config_tokenizer_and_base_path(
    tiny_llm_dir: Path, qa_file: Path, tmp_path: Path
):
    out = tmp_path / "adapter"
    finetune(fast(tiny_llm_dir, max_steps=2), out, data=qa_file, progress=False)
    saved, run = FinetuneConfig.load(out)
    assert saved == fast(tiny_llm_dir, max_steps=2) and run["data"]["examples"] == len(QA)
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        tiny_llm_dir
    )
    assert (out / "tokenizer_config.json").is_file() and not (out / CHECKPOINT).exists()
    assert (out / CONFIG_FILE).is_file()


def test_qlora_trains_on_a_4bit_base(tiny_llm_dir: Path, qa_file: Path, tmp_path: Path):
    result = finetune(
        fast(tiny_llm_dir, quantization="nf4"), tmp_path / "adapter", data=qa_file, progress=False
    )
    assert result.quantization == "nf4"
    assert result.final_eval_loss < result.first_eval_loss - 0.1


def test_qlora_trains_where_bitsandbytes_would_repack_4bit_weights_for_inference(
    tiny_llm_dir: Path, qa_file: Path, tmp_path: Path, monkeypatch
):
    # As on a CPU with AVX512-BF16, where an eval pass repacks the weights and training then went nowhere.
    import bitsandbytes.nn.modules

    monkeypatch.setattr(bitsandbytes.nn.modules, "has_avx512bf16", lambda: True)
    result = finetune(
        fast(tiny_llm_dir, quantization="nf4"), tmp_path / "adapter", data=qa_file, progress=False
    )
    assert result.final_eval_loss < result.first_eval_loss - 0.1


def test_training_on_store_chunks(tiny_llm_dir: Path, rag, corpus, tmp_path: Path):
    rag.ingest(corpus, progress=False)
    result = finetune(
        fast(tiny_llm_dir, max_steps=6, batch_size=2), tmp_path / "adapter", index=rag.folder, progress=False
    )
    assert result.steps == 6 and result.losses[-1] < result.losses[0]


def test_loftq_without_cuda_is_refused_before_loading(
    tiny_llm_dir: Path, qa_file: Path, tmp_path: Path, monkeypatch
):
    import ragtune.finetune.train as train_module

    monkeypatch.setattr(train_module, "choose_device", lambda device: "cpu")  # as on a machine without CUDA
    config = fast(tiny_llm_dir, init_lora_weights="loftq", quantization="none")
    with pytest.raises(InputError, match="loftq.*CUDA"):
        finetune(config, tmp_path / "adapter", data=qa_file, progress=False)
    assert not (tmp_path / "adapter").exists()


def initial_adapter(tiny_llm_dir: Path, qa_file: Path, out: Path, init) -> dict:
    """The adapter a run writes after one step at a negligible learning rate: its initial weights."""
    from safetensors.torch import load_file

    config = fast(
        tiny_llm_dir, init_lora_weights=init, quantization="none", lr=1e-9, max_steps=1, eval_fraction=0.0
    )
    finetune(config, out, data=qa_file, progress=False)
    return load_file(str(out / "adapter_model.safetensors"))


def lora_a(tensors: dict) -> list:
    return [tensors[k] for k in sorted(tensors) if "lora_A" in k]


def lora_b(tensors: dict) -> list:
    return [tensors[k] for k in sorted(tensors) if "lora_B" in k]


@pytest.fixture(scope="module")
def default_init(tiny_llm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("default-init")
    return initial_adapter(tiny_llm_dir, write_jsonl(folder / "qa.jsonl", QA), folder / "adapter", True)


@pytest.mark.skipif(not cuda_available(), reason="needs CUDA (peft computes LoftQ there)")
def test_loftq_gives_other_initial_weights_than_the_default(
    default_init: dict, tiny_llm_dir: Path, qa_file: Path, tmp_path: Path
):
    tensors = initial_adapter(tiny_llm_dir, qa_file, tmp_path / "adapter", "loftq")
    for a, default_a in zip(lora_a(tensors), lora_a(default_init), strict=True):
        assert float((a - default_a).abs().max()) > 1e-3


def test_default_init_starts_from_the_base_model(default_init: dict):
    # B = 0 at init; one step at lr 1e-9 moves it by about 1e-9.
    assert default_init and all(float(b.abs().max()) < 1e-6 for b in lora_b(default_init))
    assert all(float(a.abs().max()) > 0.01 for a in lora_a(default_init))


@pytest.mark.parametrize("init", ["gaussian", "eva", "pissa", "olora", False])
def test_every_init_gives_other_initial_weights_than_the_default(
    init, default_init: dict, tiny_llm_dir: Path, qa_file: Path, tmp_path: Path
):
    tensors = initial_adapter(tiny_llm_dir, qa_file, tmp_path / "adapter", init)
    assert sorted(tensors) == sorted(default_init)
    for a, default_a in zip(lora_a(tensors), lora_a(default_init), strict=True):
        # A converted PiSSA/OLoRA adapter stacks [A | A0], its first r rows the trained A; EVA may give a
        # layer fewer or more than r rows.
        rows = min(a.shape[0], default_a.shape[0])
        assert float((a[:rows] - default_a[:rows]).abs().max()) > 1e-3


def test_gaussian_init_draws_lora_a_with_sd_one_over_r(tiny_llm_dir: Path, qa_file: Path, tmp_path: Path):
    a = torch_cat(lora_a(initial_adapter(tiny_llm_dir, qa_file, tmp_path / "adapter", "gaussian")))
    assert float(a.std()) == pytest.approx(1 / 8, rel=0.1)  # r = 8; kaiming-uniform A has sd 0.072


def test_init_false_makes_lora_b_random(tiny_llm_dir: Path, qa_file: Path, tmp_path: Path):
    tensors = initial_adapter(tiny_llm_dir, qa_file, tmp_path / "adapter", False)
    assert all(float(b.abs().max()) > 0.01 for b in lora_b(tensors))


def test_eva_init_gives_orthonormal_lora_a_rows(tiny_llm_dir: Path, qa_file: Path, tmp_path: Path):
    import torch

    for a in lora_a(initial_adapter(tiny_llm_dir, qa_file, tmp_path / "adapter", "eva")):
        assert torch.allclose(a @ a.T, torch.eye(a.shape[0]), atol=1e-4)  # principal directions


def test_eva_takes_lora_a_from_the_svd_of_the_layer_inputs(tiny_llm_dir: Path, tokenizer):
    import torch

    from ragtune.finetune.adapter import add_adapter
    from ragtune.finetune.data import collate
    from ragtune.rag.models.loading import load_model

    examples = [tokenize_chat(record_messages(r), tokenizer, 64) for r in QA]
    batches = [collate(examples[i : i + 4], tokenizer.pad_token_id) for i in range(0, len(examples), 4)]
    base = load_model(resolve_model(str(tiny_llm_dir)), "none", "cpu")
    inputs = []
    hook = base.model.layers[0].self_attn.q_proj.register_forward_hook(
        lambda m, args, out: inputs.append(args[0])
    )
    with torch.no_grad():
        for batch in batches:
            base(**batch)
    hook.remove()
    # The principal directions of the layer's inputs at the answer tokens (EVA's SVD is over those).
    rows = torch.cat([x[b["labels"] != IGNORE] for x, b in zip(inputs, batches, strict=True)])
    principal = torch.linalg.svd(rows - rows.mean(0), full_matrices=False).Vh

    def share_in_principal_subspace(init) -> float:
        model = add_adapter(
            load_model(resolve_model(str(tiny_llm_dir)), "none", "cpu"),
            fast(tiny_llm_dir, init_lora_weights=init),
            batches,
        )
        a = model.base_model.model.model.layers[0].self_attn.q_proj.lora_A["default"].weight.detach()
        a = a / a.norm(dim=1, keepdim=True)
        return float((a @ principal[: a.shape[0]].T).norm() ** 2 / a.shape[0])

    assert share_in_principal_subspace("eva") > 0.95
    assert share_in_principal_subspace(True) < 0.5  # random rows: about r / hidden size = 8 / 64


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_an_init_that_changes_the_base_saves_an_adapter_for_the_unmodified_base(
    init, tiny_llm_dir: Path, qa_file: Path, tmp_path: Path, tokenizer
):
    import torch

    from ragtune.rag.models.loading import attach_adapter, load_model

    out = tmp_path / "adapter"
    initial_adapter(tiny_llm_dir, qa_file, out, init)
    base = load_model(resolve_model(str(tiny_llm_dir)), "none", "cpu")
    ids = tokenizer("what does LoRA learn ?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        before = base(ids).logits
        after = attach_adapter(base, str(out))(ids).logits
    # PiSSA and OLoRA start from the base model's own function (base = residual + initial BA); barely
    # trained, the saved adapter on the real base must give that function, not base + BA.
    assert torch.allclose(before, after, atol=1e-4)
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 16  # [A | A0]: rank 2r
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_eva_with_batches_smaller_than_its_rank_is_refused(tiny_llm_dir: Path, qa_file: Path, tmp_path: Path):
    # peft skips a batch with fewer tokens than components, and cycles over the batches until the SVD
    # converges: with none big enough it would never return.
    config = fast(tiny_llm_dir, init_lora_weights="eva", r=64, batch_size=1)
    with pytest.raises(InputError, match="'eva' needs batches of at least 128 tokens"):
        finetune(config, tmp_path / "adapter", data=qa_file, progress=False)


def torch_cat(tensors: list):
    import torch

    return torch.cat([t.flatten() for t in tensors])


def test_an_interrupted_run_resumes_from_its_checkpoint_to_the_same_adapter(
    tiny_llm_dir: Path, qa_file: Path, tmp_path: Path
):
    config = fast(tiny_llm_dir, max_steps=8, save_every=4, dropout=0.0)
    whole = finetune(config, tmp_path / "whole", data=qa_file, progress=False)

    source = resolve_model(config.model)
    tokenizer = load_tokenizer(source.path)
    dataset = load_qa_jsonl(qa_file, tokenizer, config.max_length)
    interrupted = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        train(config, source, tokenizer, dataset, interrupted, progress=False, on_step=interrupt_at(6))
    assert (interrupted / CHECKPOINT).is_dir() and not (interrupted / "adapter_config.json").exists()
    resumed = train(config, source, tokenizer, dataset, interrupted, progress=False)
    assert resumed.resumed_from == 4 and resumed.steps == 8
    assert resumed.losses == pytest.approx(whole.losses, rel=1e-4)


class RunsCodeWhenUnpickled:
    """A pickle that creates `marker` when loaded: what a crafted checkpoint file could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def interrupted_run(tiny_llm_dir: Path, qa_file: Path, out: Path):
    """A run stopped after step 3 of 4, leaving its checkpoint of step 2 in `out`; returns a function
    that resumes it."""
    config = fast(tiny_llm_dir, max_steps=4, save_every=2)
    source = resolve_model(config.model)
    tokenizer = load_tokenizer(source.path)
    dataset = load_qa_jsonl(qa_file, tokenizer, config.max_length)
    with pytest.raises(KeyboardInterrupt):
        train(config, source, tokenizer, dataset, out, progress=False, on_step=interrupt_at(3))
    return lambda: train(config, source, tokenizer, dataset, out, progress=False)


def test_a_checkpoint_holding_a_pickle_is_refused_without_running_it(
    tiny_llm_dir: Path, qa_file: Path, tmp_path: Path
):
    import torch

    out = tmp_path / "adapter"
    resume = interrupted_run(tiny_llm_dir, qa_file, out)
    # Swap the checkpoint's optimizer and RNG state for a crafted pickle, as an old or hostile folder has.
    checkpoint = out / CHECKPOINT
    for name in ("optimizer.safetensors", "optimizer.json", "rng.safetensors"):
        (checkpoint / name).unlink(missing_ok=True)
    marker = tmp_path / "pwned"
    torch.save({"optimizer": RunsCodeWhenUnpickled(marker)}, checkpoint / "trainer_state.pt")

    with pytest.raises(InputError) as error:
        resume()
    assert not marker.exists()
    message = str(error.value)
    assert "trainer_state.pt" in message and "--no-resume" in message and "\n" not in message


def test_a_damaged_checkpoint_is_one_line_naming_it(tiny_llm_dir: Path, qa_file: Path, tmp_path: Path):
    out = tmp_path / "adapter"
    resume = interrupted_run(tiny_llm_dir, qa_file, out)
    (out / CHECKPOINT / "optimizer.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(InputError, match=f"{out / CHECKPOINT}: a damaged checkpoint .*--no-resume"):
        resume()


def test_resuming_with_other_settings_is_refused(tiny_llm_dir: Path, qa_file: Path, tmp_path: Path):
    config = fast(tiny_llm_dir, max_steps=8, save_every=4)
    source = resolve_model(config.model)
    tokenizer = load_tokenizer(source.path)
    dataset = load_qa_jsonl(qa_file, tokenizer, config.max_length)
    with pytest.raises(KeyboardInterrupt):
        train(config, source, tokenizer, dataset, tmp_path / "a", progress=False, on_step=interrupt_at(5))
    with pytest.raises(InputError, match="other settings"):
        train(
            fast(tiny_llm_dir, max_steps=8, save_every=4, lr=1e-3),
            source,
            tokenizer,
            dataset,
            tmp_path / "a",
            progress=False,
        )


def test_an_out_that_is_a_file_is_refused_in_one_line(tiny_llm_dir: Path, qa_file: Path, tmp_path: Path):
    out = tmp_path / "adapter"
    out.write_text("not a folder")
    with pytest.raises(InputError, match=f"{out}: a file, not a folder"):
        finetune(fast(tiny_llm_dir, max_steps=1), out, data=qa_file, progress=False)
    assert out.read_text() == "not a folder"


def test_a_finished_adapter_is_never_overwritten(tiny_llm_dir: Path, qa_file: Path, tmp_path: Path):
    finetune(fast(tiny_llm_dir, max_steps=1), tmp_path / "a", data=qa_file, progress=False)
    with pytest.raises(InputError, match="already holds a trained adapter"):
        finetune(fast(tiny_llm_dir, max_steps=1), tmp_path / "a", data=qa_file, progress=False)


@pytest.fixture(scope="module")
def trained_adapter(tiny_llm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("trained")
    qa = write_jsonl(folder / "qa.jsonl", QA)
    finetune(fast(tiny_llm_dir, max_steps=6), folder / "adapter", data=qa, progress=False)
    return folder / "adapter"


def test_merged_model_gives_the_adapters_logits(trained_adapter: Path, tiny_llm_dir: Path, tmp_path: Path):
    import torch

    result = merge(trained_adapter, tmp_path / "merged")
    # merge() folds the adapter into a full-precision base on the CPU: the check is made there too, so it
    # means the same on a CUDA machine (where the default load would be 4-bit).
    merged, with_adapter, base = (
        LocalLLM.load(GeneratorConfig(model=model, quantization="none", device="cpu"))
        for model in (result.out, str(trained_adapter), str(tiny_llm_dir))
    )
    ids = base.tokenizer("what does LoRA learn ?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a, m, b = (llm.model(ids).logits for llm in (with_adapter, merged, base))
    assert torch.allclose(a, m, atol=1e-4)
    assert (a - b).abs().max() > 1e-2  # the adapter did change the model, so the check above means something


def test_merged_folder_is_standalone(trained_adapter: Path, tmp_path: Path):
    out = Path(merge(trained_adapter, tmp_path / "merged").out)
    assert any(out.glob("*.safetensors")) and not (out / "adapter_config.json").exists()
    assert (
        "chat_template" in json.loads((out / "tokenizer_config.json").read_text())
        or (out / "chat_template.jinja").exists()
    )
    assert LocalLLM.load(GeneratorConfig(model=str(out), max_new_tokens=3)).generate(
        [{"role": "user", "content": "LoRA ?"}]
    )


def test_merge_never_overwrites(trained_adapter: Path, tmp_path: Path):
    (tmp_path / "merged").mkdir()
    with pytest.raises(InputError, match="already exists"):
        merge(trained_adapter, tmp_path / "merged")


def test_merge_of_a_folder_that_is_no_adapter_says_so(tiny_llm_dir: Path, tmp_path: Path):
    with pytest.raises(InputError, match="not an adapter folder"):
        merge(tiny_llm_dir, tmp_path / "merged")


def test_perplexity_of_a_uniform_model_is_its_vocabulary_size():
    import torch

    class Uniform(torch.nn.Module):
        device = torch.device("cpu")

        def forward(self, input_ids, labels):
            logits = torch.zeros(*input_ids.shape, 50)
            loss = torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:])
            return type("Out", (), {"loss": loss})()

    class Words:
        def __call__(self, text, add_special_tokens, return_tensors):
            return {"input_ids": torch.tensor([[i % 50 for i in range(len(text.split()))]])}

    value, scored = perplexity(Uniform(), Words(), "a " * 100, max_tokens=64, window=16)
    assert value == pytest.approx(50.0) and scored == 60  # 4 windows of 16 tokens, 15 predictions each


def test_compare_measures_each_model_in_its_own_process(
    trained_adapter: Path, tiny_llm_dir: Path, tmp_path: Path
):
    config = CompareConfig(runs=2, new_tokens=4, perplexity_tokens=64, window=32)
    results = compare(
        [str(tiny_llm_dir), str(trained_adapter)], config, "what does LoRA learn ? " * 20, tmp_path
    )
    base, tuned = results
    assert tuned.adapter == str(trained_adapter) and base.adapter is None
    assert tuned.perplexity != base.perplexity and base.perplexity > 1
    assert all(
        m.latency_mean > 0 and m.latency_sd >= 0 and m.peak_memory_mb > 0 and m.size_mb > 0 for m in results
    )
    text = table(results, config.runs)
    assert "(adapter only)" in text and text.count("\n") == 3


def test_compare_reports_a_model_that_fails_to_load(tmp_path: Path):
    from ragtune import ModelLoadError

    with pytest.raises(ModelLoadError, match="measuring ./missing failed: ./missing: no such file"):
        compare(["./missing"], CompareConfig(runs=2), "text text", tmp_path)


def test_table_has_one_row_per_model():
    m = Measurement("base", "/m", None, "none", "cpu", 1.0, 0.1, 0.5, 0.01, 64.0, 900.0, 12.3, 100)
    assert "| base | none | 1.0 | 0.10 | 0.500 ± 0.010 | 64.0 | 900 | 12.30 |" in table([m], 10)
