"""Tiny exported model folders made in a test without training (``write_folder`` on a freshly
built model): the starting point of the hostile model-folder cases in test_model_folders.py and
test_hostile_corpus.py.  Nothing is committed as a file."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np


def export_tiny(out: Path, model: str = "lstm", tokenizer: str = "remi", registries: Any = None,
                model_params: dict[str, Any] | None = None) -> Path:
    """A folder ``out`` exported from an untrained tiny ``model`` over ``tokenizer`` (a Markov
    model is fitted on 20 random sequences): the layout ``musicfw export`` writes."""
    import torch
    from omegaconf import OmegaConf

    import musicfw
    from musicfw.core.export import ExportSource
    from musicfw.engine.pretrained import plugins_used, write_folder

    tok = musicfw.build_tokenizer(tokenizer)
    params = dict(model_params or {})
    if model == "lstm":
        params = {"hidden_size": 8, "num_layers": 1, "embed_dim": 4, **params}
    elif model == "transformer":
        params = {"d_model": 8, "num_layers": 1, "num_heads": 2, "d_ff": 16, "max_context": 32, **params}
    elif model == "markov":
        params = {"order": 2, **params}
    torch.manual_seed(0)
    net = musicfw.build("model", model, tokenizer=tok, **params)
    if model == "markov":
        rng = np.random.default_rng(0)
        net.fit_sequences([rng.integers(0, tok.vocab_size, size=40) for _ in range(20)])
    config = OmegaConf.create({
        "name": "tiny", "seed": 3, "data": {"name": "midi_folder", "path": "x"},
        "tokenizer": {"name": tokenizer}, "model": {"name": model, **params},
        "sampler": {"name": "temperature", "temperature": 1.0},
        "generate": {"n": 1, "batch_size": 1, "max_tokens": 16, "render_audio": False, "constraints": True},
        "train": {"max_steps": 0},
    })
    if registries is None:
        from musicfw.core.plugins import load_registries

        registries = load_registries()
    source = ExportSource(Path("runs/tiny"), config, net, tok, "last", {}, "mit",
                          plugins=plugins_used(config, registries))
    out.mkdir(parents=True, exist_ok=True)
    write_folder(source, out)
    return out


def edit_json(folder: Path, name: str, change: Any) -> None:
    """Apply ``change(doc) -> doc`` to the JSON file ``folder / name``."""
    path = folder / name
    doc = json.loads(path.read_text())
    path.write_text(json.dumps(change(doc)))


def rewrite_weights(folder: Path, change: Any, metadata_change: Any = None) -> None:
    """Rewrite ``model.safetensors`` with ``change(tensors) -> tensors`` (and the metadata with
    ``metadata_change``) and record its new sha256 in config.json, so that only the content
    is hostile (the checksum matches)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from musicfw.engine.integrity import sha256_file

    path = folder / "model.safetensors"
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors = change(tensors)
    if metadata_change is not None:
        metadata = metadata_change(metadata)
    save_file(tensors, str(path), metadata=metadata)
    fix_sha(folder)


def fix_sha(folder: Path) -> None:
    """Record the weights file's current sha256 in config.json."""
    from musicfw.engine.integrity import sha256_file

    edit_json(folder, "config.json", lambda d: {**d, "weights": {**d["weights"], "sha256": sha256_file(folder / "model.safetensors")}})


# --------------------------------------------------------------------------------------------
# hostile variants of a folder: name -> (base model, edit(folder, outside)); ``outside`` is a
# folder beside it (a file there must never be read through the folder)
# --------------------------------------------------------------------------------------------


def _model(**changes: Any) -> Any:
    return lambda folder, outside: edit_json(folder, "config.json", lambda d: {**d, "model": {**d["model"], **changes}})


def _tokenizer_config(**changes: Any) -> Any:
    def edit(folder: Path, outside: Path) -> None:
        edit_json(folder, "tokenizer.json", lambda d: {**d, "config": {**d["config"], **changes}})
        edit_json(folder, "config.json", lambda d: {**d, "tokenizer": {**d["tokenizer"], "config": {**d["tokenizer"]["config"], **changes}}})
    return edit


def _top(key: str, value: Any) -> Any:
    return lambda folder, outside: edit_json(folder, "config.json", lambda d: {**d, key: value})


def _generate(**changes: Any) -> Any:
    return lambda folder, outside: edit_json(folder, "config.json", lambda d: {**d, "generate": {**d["generate"], **changes}})


def _write(name: str, text: str) -> Any:
    def edit(folder: Path, outside: Path) -> None:
        (folder / name).write_text(text)
    return edit


def _nested(folder: Path, outside: Path) -> None:
    (folder / "config.json").write_text("[" * 200_000 + "]" * 200_000)


def _many_containers(folder: Path, outside: Path) -> None:
    doc = json.loads((folder / "tokenizer.json").read_text())
    text = json.dumps(doc)[:-1] + ', "padding": [' + ",".join(["{}"] * 1_100_000) + "]}"
    (folder / "tokenizer.json").write_text(text)


def _oversized(folder: Path, outside: Path) -> None:
    with open(folder / "config.json", "r+") as f:
        f.seek(0, 2)
        f.write(" " * (5 << 20))


def _tensors(change: Any) -> Any:
    return lambda folder, outside: rewrite_weights(folder, change)


def _nan(tensors: dict) -> dict:
    name = sorted(k for k, v in tensors.items() if v.is_floating_point())[0]
    t = tensors[name].clone()
    t.view(-1)[0] = float("nan")
    return {**tensors, name: t}


def _header_claims(folder: Path, outside: Path) -> None:
    """A header whose first tensor claims 10^12 elements (its byte range unchanged)."""
    path = folder / "model.safetensors"
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    first = sorted(k for k in header if k != "__metadata__")[0]
    header[first]["shape"] = [1_000_000, 1_000_000]
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n :])
    fix_sha(folder)


def _huge_header_length(folder: Path, outside: Path) -> None:
    path = folder / "model.safetensors"
    raw = path.read_bytes()
    path.write_bytes((2**62).to_bytes(8, "little") + raw[8:])
    fix_sha(folder)


def _markov(change: Any) -> Any:
    def tensors(ts: dict) -> dict:
        return change(dict(ts))
    return lambda folder, outside: rewrite_weights(folder, tensors)


def _markov_short(ts: dict) -> dict:
    key = "_extra_state/arrays/unigram"
    return {**ts, key: ts[key][:5].clone()}


def _markov_negative(ts: dict) -> dict:
    key = "_extra_state/arrays/o1_counts"
    t = ts[key].clone()
    t[0] = -5
    return {**ts, key: t}


def _markov_states(folder: Path, outside: Path) -> None:
    def meta(m: dict) -> dict:
        skeleton = json.loads(m["musicfw.extra_state"])
        skeleton["_extra_state"]["d"]["n_states"] = {"v": 10**12}
        return {**m, "musicfw.extra_state": json.dumps(skeleton)}
    rewrite_weights(folder, lambda ts: ts, meta)


def _prompt_outside(folder: Path, outside: Path) -> None:
    """config.json names a MIDI file beside the folder as the prompt (and a soundfont)."""
    import symusic

    score = symusic.Score(480)
    track = symusic.Track("secret", 0)
    for i in range(40):
        track.notes.append(symusic.Note(i * 240, 240, 30 + (i % 3), 100))
    score.tracks.append(track)
    prompt = outside / "secret.mid"
    score.dump_midi(str(prompt))
    edit_json(folder, "config.json", lambda d: {**d, "generate": {**d["generate"], "prompt": str(prompt),
                                                                    "soundfont": str(outside / "x.sf2")}})


def _miditok_config_file(folder: Path, outside: Path) -> None:
    """tokenizer.json names a MidiTok config file beside the folder (not valid JSON: reading
    it would be an error of its own)."""
    (outside / "tokenizer.json").write_text("secret, not json")
    config = {"tokenizer": "REMI", "config_file": str(outside / "tokenizer.json")}
    (folder / "tokenizer.json").write_text(json.dumps({"name": "miditok", "config": config}))
    edit_json(folder, "config.json", lambda d: {**d, "tokenizer": {**d["tokenizer"], "name": "miditok", "config": config}})


def _prompt_not_midi(folder: Path, outside: Path) -> None:
    edit_json(folder, "config.json", lambda d: {**d, "generate": {**d["generate"], "prompt": "/etc/hostname"}})


#: name -> (model, edit, fragments of the message); every one must be refused with exit 2 (or, for the file references,
#: generate with the reference dropped) in bounded memory and time
CLASS1_CASES = {
    "hidden_size_60000": ("lstm", _model(hidden_size=60000), ["config.json", "model.hidden_size"]),
    "lstm_at_every_ceiling": ("lstm", _model(hidden_size=16384, num_layers=256, embed_dim=16384),
                              ["model.safetensors", "do not fit", "Nothing was allocated"]),
    "hidden_size_fits_bounds_not_weights": ("lstm", _model(hidden_size=4096), ["model.safetensors", "head.weight"]),
    "embed_dim_1e9": ("lstm", _model(embed_dim=1_000_000_000), ["config.json", "model.embed_dim"]),
    "num_layers_1e6": ("lstm", _model(num_layers=1_000_000), ["config.json", "model.num_layers"]),
    "d_model_float": ("transformer", _model(d_model=1e9), ["config.json", "model.d_model"]),
    "transformer_at_every_ceiling": ("transformer", _model(d_model=16384, num_layers=8, num_heads=1024, d_ff=65536,
                                                           max_context=1_048_576), ["model.safetensors", "do not fit"]),
    "model_unknown_key": ("lstm", _model(key=1, registries=2), ["config.json", "model.key"]),
    "model_name_not_text": ("lstm", _model(name=5), ["config.json", "model.name"]),
    "remi_beat_resolution_1e8": ("lstm", _tokenizer_config(beat_resolution=100_000_000),
                                 ["tokenizer.json", "beat_resolution"]),
    "tokenizer_unknown_key": ("lstm", _tokenizer_config(context=1), ["tokenizer.json", "config.context"]),
    "tokenizer_json_not_object": ("lstm", _write("tokenizer.json", "[1, 2]"), ["tokenizer.json"]),
    "config_nested_200000": ("lstm", _nested, ["config.json", "nests 200,000 levels"]),
    "config_over_cap": ("lstm", _oversized, ["config.json", "bytes"]),
    "tokenizer_1m_containers": ("lstm", _many_containers, ["tokenizer.json", "objects/arrays"]),
    "seed_abc": ("lstm", _top("seed", "abc"), ["config.json", "`seed`"]),
    "vocab_json_5": ("lstm", _write("vocab.json", "5"), ["vocab.json", "list of token names"]),
    "vocab_json_numbers": ("lstm", _write("vocab.json", "[1, 2, 3]"), ["vocab.json", "list of token names"]),
    "generate_n_1e9": ("lstm", _generate(n=1_000_000_000, batch_size=1_000_000_000), ["config.json", "generate.n"]),
    "generate_max_tokens_1e12": ("lstm", _generate(max_tokens=1_000_000_000_000), ["config.json", "generate.max_tokens"]),
    "generate_n_float": ("lstm", _generate(n=1e9), ["config.json", "generate"]),
    "generate_n_text": ("lstm", _generate(n="many"), ["config.json", "generate"]),
    "sampler_unknown_key": ("lstm", _top("sampler", {"name": "temperature", "registries": 1}),
                            ["config.json", "sampler.registries"]),
    "sampler_chain_100k": ("lstm", _top("sampler", ["greedy"] * 100_000), ["config.json", "`sampler`"]),
    "nan_weights": ("lstm", _tensors(_nan), ["model.safetensors", "'embed.weight'", "NaN"]),
    "extra_tensor": ("lstm", _tensors(lambda ts: {**ts, "stowaway": ts[sorted(ts)[0]].clone()}),
                     ["model.safetensors", "stowaway"]),
    "missing_tensor": ("lstm", _tensors(lambda ts: {k: v for k, v in ts.items() if k != sorted(ts)[0]}),
                       ["model.safetensors", "embed.weight is missing"]),
    "header_claims_1e12": ("lstm", _header_claims, ["model.safetensors", "4,000,000,000,000 bytes"]),
    "header_length_2e62": ("lstm", _huge_header_length, ["model.safetensors", "header claims"]),
    "miditok_config_file_outside": ("lstm", _miditok_config_file, ["tokenizer.json", "different vocabulary"]),
    "markov_short_table": ("markov", _markov(_markov_short), ["model.safetensors", "unigram"]),
    "markov_negative_counts": ("markov", _markov(_markov_negative), ["model.safetensors", "negative counts"]),
    "markov_1e12_states": ("markov", _markov_states, ["model.safetensors", "n_states is 1000000000000"]),
}

#: cases that must still generate (exit 0), the file reference never followed
CLASS1_DROPPED = {
    "prompt_outside_the_folder": ("lstm", _prompt_outside),
    "prompt_not_midi": ("lstm", _prompt_not_midi),
    "sampler_k_1e12": ("lstm", _top("sampler", {"name": "top_k", "k": 10**12})),
}
