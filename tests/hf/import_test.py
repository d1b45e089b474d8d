#!/usr/bin/env python3
"""`moxie import --hf` and `export --hf` with inputs that are not what moxie
would write itself:

1. a Mixtral whose max_position_embeddings (64) is shorter than moxie's
   default data.seq_len imports (data.seq_len fitted to it, said in the
   output) and its config.yaml trains a few steps;
2. importing into a folder that already holds a run is refused unless
   --overwrite is given (which replaces its config and checkpoints);
3. bad config.json and model.safetensors.index.json files end in one error
   naming the file and the key (never a JSON library's message): a value of
   the wrong type, a size past its bound, sizes the weight files cannot hold,
   a weight_map entry outside the folder, a folder where config.json should be;
4. an export whose write fails (a folder in the place of model.safetensors)
   is an error naming the file.
Each error is printed, for tests/bench/RESULTS.md. Exit 77 when transformers
is missing.

Usage: import_test.py MOXIE REPO_ROOT
"""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import moxie_testing as mt  # noqa: E402
from moxie_testing import expect  # noqa: E402

MOXIE, ROOT = sys.argv[1:3]
mt.skip_unless_importable("torch", "safetensors", "transformers")
import torch  # noqa: E402
from transformers import MixtralConfig, MixtralForCausalLM  # noqa: E402

TEXT = f"data.path={os.path.join(ROOT, '.data/text')}"


def moxie(*args, check=True):
    return mt.moxie(MOXIE, *args, check=check)


def refused(what, out, *says):
    error = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ""
    print(f"  [{what}] exit {out.returncode}: {error}")
    leaked = any(w in out.stderr for w in ("type_error", "json.exception", "parse_error", "terminate"))
    expect(out.returncode != 0 and all(s in out.stderr for s in says) and not leaked,
           f"{what}: refused, saying {says}")


with mt.scratch_dir("moxie-import-") as tmp:
    torch.manual_seed(3)
    short = MixtralForCausalLM(MixtralConfig(
        vocab_size=260, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        rope_theta=10000.0, rms_norm_eps=1e-5, num_hidden_layers=2, intermediate_size=48, num_local_experts=4,
        num_experts_per_tok=2, sliding_window=None))
    hf_dir = os.path.join(tmp, "short-hf")
    short.save_pretrained(hf_dir)

    # 1. A short context: data.seq_len follows it, and the run trains.
    run = os.path.join(tmp, "run")
    out = moxie("import", "--hf", hf_dir, run, "--set", TEXT)
    print("  " + out.stdout.strip().splitlines()[0])
    expect("data.seq_len set to 64" in out.stdout, "short context: the output says data.seq_len was fitted to 64")
    out = moxie("train", os.path.join(run, "config.yaml"), "--set", "train.steps=3", "--set", "train.eval_every=0",
                "--set", "train.eval_batches=1", "--set", "train.threads=1", "--set", "train.micro_batch_size=2",
                "--set", "train.log_every=1")
    rows = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
    trained = [r for r in rows if "grad_norm" in r]
    expect("at step 0" in out.stdout and [r["step"] for r in trained] == [1, 2, 3]
           and all(r["loss"] == r["loss"] and r["loss"] < 1e9 for r in trained),
           "short context: the imported config trains 3 steps with finite losses")

    # 2. A folder that holds a run.
    before = (open(os.path.join(run, "config.yaml")).read(), sorted(os.listdir(os.path.join(run, "checkpoints"))),
              os.path.getmtime(os.path.join(run, "checkpoints", "step-00000000", "index.pb")))
    out = moxie("import", "--hf", hf_dir, run, check=False)
    refused("import into a run folder", out, run, "already holds a run", "--overwrite")
    after = (open(os.path.join(run, "config.yaml")).read(), sorted(os.listdir(os.path.join(run, "checkpoints"))),
             os.path.getmtime(os.path.join(run, "checkpoints", "step-00000000", "index.pb")))
    expect(before == after, "the run's config and checkpoints are untouched")
    out = moxie("import", "--hf", hf_dir, run, "--overwrite", "--set", TEXT)
    expect(sorted(os.listdir(os.path.join(run, "checkpoints"))) == ["step-00000000"],
           "--overwrite: the import replaces the run's checkpoints")

    # 3. Bad Hugging Face files, each a copy of the good folder with one change.
    config = json.load(open(os.path.join(hf_dir, "config.json")))

    def with_config(name, **changes):
        d = os.path.join(tmp, name)
        shutil.copytree(hf_dir, d)
        json.dump(dict(config, **changes), open(os.path.join(d, "config.json"), "w"))
        return d

    cases = [
        ("hidden_size is a string", with_config("c1", hidden_size="64"), ["config.json", "'hidden_size'",
                                                                          "expected an integer"]),
        ("vocab_size past its bound", with_config("c2", vocab_size=10 ** 12), ["config.json", "'vocab_size'"]),
        ("tie_word_embeddings is a number", with_config("c3", tie_word_embeddings=1),
         ["config.json", "'tie_word_embeddings'", "true or false"]),
        ("sizes the weights cannot hold", with_config("c4", hidden_size=16384, intermediate_size=65536),
         ["config.json", "weight files hold", "does not belong to these weights"]),
        ("num_experts_per_tok above num_local_experts", with_config("c5", num_experts_per_tok=9),
         ["config.json", "'num_experts_per_tok'"]),
    ]
    d = os.path.join(tmp, "c6")
    shutil.copytree(hf_dir, d)
    os.remove(os.path.join(d, "config.json"))
    os.mkdir(os.path.join(d, "config.json"))
    cases.append(("config.json is a folder", d, ["config.json", "a directory"]))
    d = os.path.join(tmp, "c7")
    shutil.copytree(hf_dir, d)
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write('{"model_type": "mixtral", "hidden_size": 64,')
    cases.append(("config.json cut short", d, ["config.json", "is not valid JSON"]))
    for name, weight_map in [("weight_map entry outside the folder", {"lm_head.weight": "../outside.safetensors"}),
                             ("weight_map entry not a string", {"lm_head.weight": 5})]:
        d = os.path.join(tmp, "w" + str(len(cases)))
        shutil.copytree(hf_dir, d)
        os.remove(os.path.join(d, "model.safetensors"))
        json.dump({"metadata": {}, "weight_map": weight_map}, open(os.path.join(d, "model.safetensors.index.json"), "w"))
        says = ["model.safetensors.index.json", "climbs out" if "outside" in name else "expected the name"]
        cases.append((name, d, says))
    for name, folder, says in cases:
        out = moxie("import", "--hf", folder, os.path.join(tmp, "out-" + os.path.basename(folder)), check=False)
        refused(name, out, *says)

    # 4. An export whose write fails.
    target = os.path.join(tmp, "export")
    os.makedirs(os.path.join(target, "model.safetensors"))
    out = moxie("export", os.path.join(run, "checkpoints", "step-00000000"), "--hf", target, check=False)
    refused("export over a folder named model.safetensors", out, os.path.join(target, "model.safetensors"))
mt.finish()
