"""The bad-input suite: for every command and every file format kvopt reads, a table of bad
inputs with the exit code and the words of the one-line message expected, each run in its
own process under a memory cap (``resource.setrlimit``) and a time limit
(:mod:`tests.badinput.runner`). Every answer must be one ``kvopt: error:`` line on stderr:
no traceback, no silent guess, no output written, in bounded time and memory."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.paths import ROOT

M8 = ["--model", "Llama-3.1-8B"]
REP = [*M8, "--gpu", "H100-SXM"]
LEN = ["--input-len", "500", "--output-len", "50"]
EST = ["estimate", *REP, *LEN]
SIM = ["simulate", *REP, *LEN]
SMALL = ["--tp-options", "1", "--precisions", "fp8/fp8", "--batches", "64"]
WL = [*M8, "--rps", "5", *LEN]  # a plan's workload
PLAN = ["plan", *WL, "--gpu", "H100-SXM", *SMALL, "--no-explain"]
PARETO = ["pareto", *WL, "--gpus", "H100-SXM", *SMALL, "--pop", "6", "--gens", "2"]
P_SMALL = [*SMALL, "--pop", "6", "--gens", "2"]
RANGE = "must be a"  # the start of every range rule (kvopt.limits.Range.text)

# (id, argv, exit code, words the one stderr line must hold); paths are relative to the
# fixture folder (see `files`)
CASES: list[tuple[str, list[str], int, list[str]]] = [
    # --- usage errors: click's, on one line --------------------------------------------
    ("usage-missing-option", ["estimate", *M8], 2, ["Missing option '--gpu'", "--help"]),
    ("usage-no-load", [*EST], 2, ["exactly one of --batch"]),
    ("usage-two-loads", [*EST, "--batch", "2", "--rps", "1"], 2, ["exactly one of"]),
    ("usage-unknown-command", ["estimat"], 2, ["No such command"]),
    ("usage-bad-choice", ["list-gpus", "--filter", "foo"], 2, ["'foo' is not one of"]),
    ("usage-not-a-number", [*EST, "--rps", "fast"], 2, ["--rps", "'fast' is not a number"]),
    ("usage-schema-both", ["schema", "plan", "--list"], 2, ["NAME or --list"]),
    ("usage-gpus-and-gpu", [*PLAN, "--gpus", "L4"], 2, ["--gpus or --gpu"]),
    # --- numbers: finite and in range -----------------------------------------------------
    ("rps-inf", [*EST, "--rps", "inf"], 2, ["--rps", "'inf'", RANGE]),
    ("rps-nan", [*EST, "--rps", "nan"], 2, ["--rps", "'nan'"]),
    ("rps-zero", [*EST, "--rps", "0"], 2, ["--rps", "0.001 <= value"]),
    ("rps-tiny-plan", ["plan", *M8, "--rps", "1e-9", *LEN, "--gpu", "H100-SXM"], 2,
     ["--rps", "17 minutes"]),
    ("rps-huge", ["plan", *M8, "--rps", "1e12", *LEN, "--gpu", "H100-SXM"], 2,
     ["--rps", "1000000"]),
    ("batch-huge", [*EST, "--batch", "1000000000"], 2, ["--batch", "65536", "max_num_seqs"]),
    ("batch-float", [*EST, "--batch", "2.5"], 2, ["--batch", "an integer"]),
    ("concurrency-zero", [*EST, "--concurrency", "0"], 2, ["--concurrency"]),
    ("concurrency-huge", [*EST, "--concurrency", "1e10"], 2, ["--concurrency", "1000000"]),
    ("offline-huge", [*EST, "--offline", "1000000000"], 2, ["--offline", "1000000"]),
    ("rounds-without-concurrency", [*EST, "--rps", "1", "--rounds", "3"], 1,
     ["--rounds", "--concurrency"]),
    ("rounds-huge", [*EST, "--concurrency", "4", "--rounds", "100000"], 2, ["--rounds"]),
    # --- images of multimodal requests -----------------------------------------------------
    ("images-text-model", [*EST, "--rps", "1", "--images-per-request", "1", "--image-size",
                           "640x480"], 1, ["--images-per-request", "text-only"]),
    ("images-huge", [*EST, "--rps", "1", "--images-per-request", "1000"], 2,
     ["--images-per-request", RANGE, "64"]),
    ("images-negative", [*EST, "--rps", "1", "--images-per-request", "-1"], 2,
     ["--images-per-request", RANGE]),
    ("image-size-alone", [*EST, "--rps", "1", "--image-size", "640x480"], 2,
     ["--image-size needs --images-per-request"]),
    ("image-size-missing", ["estimate", "--model", "Qwen2.5-VL-7B", "--gpu", "H100-SXM",
                            *LEN, "--rps", "1", "--images-per-request", "2"], 1,
     ["--images-per-request", "image size"]),
    ("image-size-garbage", ["estimate", "--model", "Qwen2.5-VL-7B", "--gpu", "H100-SXM",
                            *LEN, "--rps", "1", "--images-per-request", "1", "--image-size",
                            "big"], 1, ["--image-size", "WxH"]),
    ("image-size-huge", ["estimate", "--model", "Qwen2.5-VL-7B", "--gpu", "H100-SXM", *LEN,
                         "--rps", "1", "--images-per-request", "1", "--image-size",
                         "100000x10"], 1, ["--image-size", "16384"]),
    ("image-aspect", ["estimate", "--model", "Qwen2.5-VL-7B", "--gpu", "H100-SXM", *LEN,
                      "--rps", "1", "--images-per-request", "1", "--image-size", "16000x10"],
     1, ["--image-size", "aspect"]),
    ("images-plan-text-model", [*PLAN, "--images-per-request", "1", "--image-size", "64x64"],
     1, ["text-only"]),
    ("images-disagg", ["disagg", "--model", "Qwen2.5-VL-7B", "--gpu", "H100-SXM", *LEN,
                       "--rps", "1", "--images-per-request", "1", "--image-size", "64x64"],
     1, ["multimodal", "not modeled"]),
    ("images-beyond-tp", ["estimate", "--model", "Qwen2.5-VL-7B", "--gpu", "H100-SXM", *LEN,
                          "--rps", "1", "--images-per-request", "1", "--image-size", "64x64",
                          "--pp", "2"], 1, ["--images-per-request", "tensor-parallel"]),
    ("pp-sliding-layers", ["estimate", "--model", "gpt-oss-20b", "--gpu", "H100-SXM", *LEN,
                           "--rps", "1", "--pp", "2"], 1, ["--pp=2", "sliding-window", "--pp 1"]),
    ("weights-mxfp4-volta", ["estimate", "--model", "gpt-oss-20b", "--gpu", "V100-SXM-32GB",
                             *LEN, "--batch", "1"], 1, ["mxfp4", "not supported"]),
    ("input-len-zero", ["estimate", *REP, "--input-len", "0", "--output-len", "5", "--batch",
                        "1"], 2, ["--input-len"]),
    ("input-len-huge", ["estimate", *REP, "--input-len", "99999999999", "--output-len", "5",
                        "--batch", "1"], 2, ["--input-len", "4194304"]),
    ("context-overflow", ["estimate", *REP, "--input-len", "200000", "--output-len", "5",
                          "--batch", "1"], 1, ["context"]),
    ("dist-nan", ["estimate", *REP, "--input-len-dist", "lognormal:mean=nan,sigma=0.5",
                  "--output-len", "10", "--rps", "1"], 1, ["mean", "finite"]),
    ("dist-uniform-inf", ["estimate", *REP, "--input-len-dist", "uniform:low=1,high=inf",
                          "--output-len", "10", "--rps", "1"], 1, ["high", "finite"]),
    ("dist-uniform-huge", ["estimate", *REP, "--input-len-dist",
                           "uniform:low=1,high=1e12", "--output-len", "10", "--rps", "1"], 1,
     ["low <= high <= 4194304"]),
    ("dist-unknown", ["estimate", *REP, "--input-len-dist", "zipf:a=2", "--output-len", "10",
                      "--rps", "1"], 1, ["unknown distribution"]),
    ("dist-csv-binary", ["estimate", *REP, "--input-len-dist", "csv:binary.csv",
                         "--output-len", "10", "--rps", "1"], 1, ["not UTF-8"]),
    ("dist-csv-missing", ["estimate", *REP, "--input-len-dist", "csv:nope.csv",
                          "--output-len", "10", "--rps", "1"], 1, ["cannot read it"]),
    ("dist-csv-negative", ["estimate", *REP, "--input-len-dist", "csv:negative.csv",
                           "--output-len", "10", "--rps", "1"], 1, ["line 3"]),
    ("tp-zero", [*EST, "--tp", "0", "--batch", "1"], 2, ["--tp"]),
    ("tp-indivisible", [*EST, "--tp", "3", "--batch", "1"], 1, ["tp"]),
    # --- parallelism beyond TP: one line naming the rule -----------------------------------
    ("ep-on-dense", [*EST, "--ep", "2", "--tp", "2", "--batch", "1"], 1,
     ["ep=2", "mixture-of-experts", "dense"]),
    ("dp-on-dense", [*EST, "--dp", "2", "--batch", "1"], 1, ["dp=2", "dense"]),
    ("ep-not-dividing-gpus", ["estimate", "--model", "Mixtral-8x7B", "--gpu", "H100-SXM",
                              "--ep", "4", "--tp", "2", *LEN, "--batch", "1"], 1,
     ["ep=4", "tp x dp = 2"]),
    ("ep-not-dividing-experts", ["estimate", "--model", "Qwen3-30B-A3B", "--gpu", "H100-SXM",
                                 "--tp", "1", "--dp", "3", "--ep", "3", *LEN, "--batch", "1"],
     1, ["ep=3", "128 routed experts"]),
    ("pp-more-than-layers", [*EST, "--pp", "64", "--batch", "1"], 1,
     ["pp=64", "32 layers"]),
    ("ep-zero", [*EST, "--ep", "0", "--batch", "1"], 2, ["--ep"]),
    ("dp-huge", [*EST, "--dp", "100000", "--batch", "1"], 2, ["--dp", "128"]),
    ("pp-nan", [*EST, "--pp", "nan", "--batch", "1"], 2, ["--pp"]),
    ("gpus-per-replica-huge", ["estimate", "--model", "Qwen3-30B-A3B", "--gpu", "GB200",
                               "--tp", "64", "--dp", "64", *LEN, "--batch", "1"], 1,
     ["tp x dp x pp", "1024"]),
    ("vllm-ep-partial", ["estimate", "--model", "Qwen3-30B-A3B", "--gpu", "H100-SXM",
                         "--tp", "4", "--ep", "2", *LEN, "--batch", "1"], 1,
     ["ep=2", "vllm", "tp x dp = 4"]),
    ("trtllm-dp-with-tp", ["estimate", "--model", "Qwen3-30B-A3B", "--gpu", "H100-SXM",
                           "--engine", "trtllm", "--tp", "2", "--dp", "2", "--ep", "4", *LEN,
                           "--batch", "1"], 1, ["dp=2", "one GPU per attention rank"]),
    ("llamacpp-ep", ["estimate", "--model", "Qwen3-30B-A3B", "--gpu", "H100-SXM",
                     "--engine", "llamacpp", "--tp", "2", "--ep", "2", *LEN, "--batch", "1"],
     1, ["llamacpp", "tensor parallelism only"]),
    ("plan-parallel-garbage", [*PLAN, "--parallel", "tp4xx8"], 1,
     ["parallel", "tp4xx8", "tpN followed by"]),
    ("plan-ep-options-none-divide", [*PLAN, "--ep-options", "3"], 1,
     ["ep-options", "divides"]),
    ("plan-ep-options-nan", [*PLAN, "--ep-options", "1,nan"], 2, ["--ep-options"]),
    ("price-nan", [*EST, "--batch", "1", "--price-usd-h", "nan"], 2, ["--price-usd-h"]),
    ("price-negative", [*EST, "--batch", "1", "--price-usd-h", "-3"], 2, ["--price-usd-h"]),
    ("seed-negative", [*SIM, "--rps", "1", "--seed", "-1"], 2, ["--seed", "32-bit"]),
    ("sim-requests-huge", [*SIM, "--rps", "1", "--num-requests", "1000000000"], 2,
     ["--num-requests", "100000"]),
    ("sim-offline-huge", [*SIM, "--offline", "500000"], 1, ["--offline", "simulates at most"]),
    ("sim-batch-huge", ["simulate", *REP, "--input-len", "100", "--output-len", "4000",
                        "--batch", "60000"], 1, ["--batch", "10000000 tokens"]),
    ("sim-tokens-huge", ["simulate", *REP, "--input-len", "100", "--output-len", "4000",
                         "--offline", "50000"], 1, ["--offline", "10000000 tokens"]),
    ("offline-steps-huge", ["estimate", *REP, "--input-len", "100", "--output-len", "4000",
                            "--offline", "300000"], 1, ["engine steps", "--concurrency"]),
    ("prefix-longer-than-prompt", [*EST, "--rps", "1", "--prefix-len", "5000",
                                   "--prefix-hit-rate", "0.5"], 1,
     ["--prefix-len=5000", "longest prompt (500 tokens)"]),
    ("prefix-hit-nan", [*EST, "--rps", "1", "--prefix-len", "50", "--prefix-hit-rate",
                        "nan"], 2, ["--prefix-hit-rate"]),
    ("prefix-half", [*EST, "--rps", "1", "--prefix-len", "50"], 2, ["prefix caching needs"]),
    ("spec-acceptance-one", [*EST, "--rps", "1", "--spec-k", "4", "--spec-acceptance", "1"],
     2, ["--spec-acceptance"]),
    ("spec-k-huge", [*EST, "--rps", "1", "--spec-k", "99", "--spec-acceptance", "0.5"], 2,
     ["--spec-k"]),
    ("spec-draft-unknown", [*EST, "--rps", "1", "--spec-k", "4", "--spec-acceptance", "0.7",
                            "--spec-draft", "Lama-3.2-1B"], 1, ["did you mean"]),
    ("spec-draft-does-not-fit", [*EST, "--rps", "1", "--spec-k", "4", "--spec-acceptance",
                                 "0.7", "--spec-draft", "Llama-3.1-405B"], 1,
     ["draft", "Llama-3.1-405B", "do not fit"]),
    ("engine-arg-nan", [*EST, "--batch", "1", "--engine-arg", "memory_fraction=nan"], 1,
     ["--engine-arg", "memory_fraction"]),
    ("engine-arg-huge-seqs", [*EST, "--batch", "1", "--engine-arg",
                              "max_num_seqs=1000000000000"], 1, ["max_num_seqs"]),
    ("engine-arg-unknown", [*EST, "--batch", "1", "--engine-arg", "max_seqs=4"], 1,
     ["unknown engine argument"]),
    ("engine-unknown", [*EST, "--batch", "1", "--engine", "vllmm"], 2, ["--engine"]),
    ("curve-rps-nan", ["curve", *REP, *LEN, "--rps", "1,nan"], 2, ["--rps", "'nan'"]),
    ("curve-too-many", ["curve", *REP, *LEN, "--rps", ",".join(["1"] * 70)], 2,
     ["at most 64"]),
    ("capacity-slo-inf", ["capacity", *REP, *LEN, "--slo-ttft-p99-ms", "inf"], 2,
     ["--slo-ttft-p99-ms"]),
    ("disagg-rps-nan", ["disagg", *REP, *LEN, "--rps", "nan"], 2, ["--rps"]),
    # --- names: checked against the catalog, never dropped ----------------------------------
    ("gpu-unknown", [*EST[:3], "--gpu", "H100-SMX", *LEN, "--batch", "1"], 1,
     ["did you mean", "H100-SXM"]),
    ("model-unknown", ["estimate", "--model", "lama-3.1-8b", "--gpu", "H100-SXM", *LEN,
                       "--batch", "1"], 1, ["Llama-3.1-8B"]),
    ("plan-gpus-empty", ["plan", *WL, "--gpus", "", *SMALL, "--no-explain"], 1,
     ["gpus", "is empty"]),
    ("plan-gpus-unknown", ["plan", *WL, "--gpus", "H100-SXM,NOPE", *SMALL, "--no-explain"], 1,
     ["--gpus='NOPE'", "unknown GPU"]),
    ("plan-availability-unknown", [*PLAN, "--availability", "NOPE=3"], 1,
     ["availability", "NOPE", "unknown GPU"]),
    ("plan-availability-float", [*PLAN, "--availability", "H100-SXM=1.5"], 2,
     ["GPU=COUNT"]),
    ("plan-tp-options-nan", ["plan", *WL, "--gpu", "H100-SXM", "--tp-options", "1,nan"], 2,
     ["--tp-options"]),
    ("plan-batches-huge", ["plan", *WL, "--gpu", "H100-SXM", "--batches", "1000000000"], 1,
     ["batches", "65536"]),
    ("plan-engine-version-old", [*PLAN, "--engine", "sglang", "--engine-version", "0.4"], 1,
     ["--engine-version", "older than every fitted sglang version", "drop --engine-version"]),
    ("estimate-engine-version-with-profile", [*EST, "--batch", "1", "--engine-version",
                                              "0.19.0", "--profile", "p.yaml"], 1,
     ["--engine-version", "calibrated profile carries its own overheads"]),
    ("plan-precision-unknown", ["plan", *WL, "--gpu", "H100-SXM", "--precisions", "fp9/fp8"],
     1, ["fp9"]),
    ("plan-solver-unknown", [*PLAN, "--solver", "cplexx"], 1, ["solver", "cplexx"]),
    ("plan-gap-nan", [*PLAN, "--gap", "nan"], 2, ["--gap"]),
    ("plan-budget-inf", [*PLAN, "--budget-usd-h", "inf"], 2, ["--budget-usd-h"]),
    ("plan-slo-nan", [*PLAN, "--slo-tpot-p99-ms", "nan"], 2, ["--slo-tpot-p99-ms"]),
    ("plan-redundancy-float", [*PLAN, "--redundancy", "1.5"], 2, ["--redundancy"]),
    ("plan-quality-nan", [*PLAN, "--max-quality-loss-pct", "nan"], 2,
     ["--max-quality-loss-pct"]),
    ("plan-time-limit-zero", [*PLAN, "--time-limit-s", "0"], 2, ["--time-limit-s"]),
    ("compare-gpus-unknown", ["compare", *WL, "--gpus", "H100-SXM,NOPE", *SMALL], 1,
     ["NOPE", "unknown GPU"]),
    ("pareto-gpus-unknown", ["pareto", *WL, "--gpus", "L4,NOPE", *P_SMALL], 1,
     ["NOPE", "unknown GPU"]),
    ("pareto-objective-unknown", [*PARETO, "--objectives", "cost,latency"], 1,
     ["latency", "valid: cost"]),
    ("pareto-pop-huge", ["pareto", *WL, "--pop", "100000"], 2, ["--pop"]),
    ("pareto-evaluations", ["pareto", *WL, "--gpus", "H100-SXM", *SMALL, "--pop", "2000",
                            "--gens", "2000"], 1,
     ["pop x gens", "evaluations"]),
    ("pareto-cap-nan", [*PARETO, "--cost-cap-multiple", "nan"], 2, ["--cost-cap-multiple"]),
    # --- outputs: existing, writable folders only; nothing written on failure -------------
    ("plan-output-proc", [*PLAN, "--output", "/proc/x.json"], 1, ["--output", "cannot write"]),
    ("plan-output-no-folder", [*PLAN, "--output", "nofolder/sub/plan.json"], 1,
     ["does not exist"]),
    ("plan-output-is-folder", [*PLAN, "--output", "."], 2, ["is a directory"]),
    ("compare-output-proc", ["compare", *PLAN[1:], "--output", "/proc/x.json"], 1,
     ["cannot write"]),
    ("size-output-proc", ["size", "fleet-ok.yaml", "--output", "/proc/x.json"], 1,
     ["cannot write"]),
    ("pareto-html-proc", [*PARETO, "--out", "front.csv", "--png", "front.png", "--html",
                          "/proc/x.html"], 1, ["--html", "cannot write"]),
    ("pareto-out-extension", [*PARETO, "--out", "front.txt"], 1, ["--out", "extension"]),
    ("export-output-proc", ["export", "plan.json", "--format", "json", "--output",
                            "/proc/x.json"], 1, ["cannot write"]),
    ("bench-out-proc", ["bench", "--endpoint", "http://127.0.0.1:9/v1", *M8, *LEN, "--rps",
                        "1", "--num-requests", "2", "--out", "/proc/b.json"], 1,
     ["--out", "cannot write"]),
    ("import-bench-out-proc", ["import-bench", "vllm.json", "--out", "/proc/b.json"], 1,
     ["--out", "cannot write"]),
    ("calibrate-out-proc", ["calibrate", "bench.json", "bench2.json", "--gpu", "H100-SXM",
                            "--out", "/proc/p.yaml"], 1, ["--out", "cannot write"]),
    ("study-out-proc", ["study", "run", "study-ok.yaml", "--out", "/proc/st"], 1,
     ["--out"]),
    ("study-out-no-parent", ["study", "run", "study-ok.yaml", "--out", "no/such/st"], 1,
     ["does not exist"]),
    ("study-export-proc", ["study", "export", "store", "--output", "/proc/r.csv"], 1,
     ["cannot write"]),
    ("study-report-dest", ["study", "report", "store", "--dest", "no/such/report"], 1,
     ["--dest", "does not exist"]),
    # --- operations: kvopt watch and kvopt ui -------------------------------------------
    ("watch-url-scheme", ["watch", "plan.json", "--metrics-url", "ftp://127.0.0.1/metrics",
                          "--once"], 1, ["--metrics-url", "http:// or https://"]),
    ("watch-url-port", ["watch", "plan.json", "--metrics-url", "http://127.0.0.1:99999/m",
                        "--once"], 1, ["--metrics-url", "not a URL"]),
    ("watch-kv-full", ["watch", "plan.json", "--metrics-url", "http://127.0.0.1:9/metrics",
                       "--kv-full", "2"], 2, ["--kv-full", RANGE]),
    ("watch-interval-nan", ["watch", "plan.json", "--metrics-url",
                            "http://127.0.0.1:9/metrics", "--interval-s", "nan"], 2,
     ["--interval-s", "'nan'"]),
    ("ui-port", ["ui", "--port", "70000"], 2, ["--port", "70000"]),
    ("ui-studies-missing", ["ui", "--studies", "no/such"], 2, ["--studies", "does not exist"]),
    # --- cost over time: kvopt schedule and kvopt tco ------------------------------------
    ("schedule-period-zero", ["schedule", "fleet-ok.yaml", "--period-hours", "0"], 2,
     ["--period-hours", RANGE]),
    ("schedule-demand-binary", ["schedule", "fleet-ok.yaml", "--demand", "binary.csv"], 1,
     ["--demand", "not UTF-8"]),
    ("schedule-demand-negative", ["schedule", "fleet-ok.yaml", "--demand",
                                  "demand-negative.csv"], 1, ["demand.rps", "from 0 (idle)"]),
    ("schedule-demand-periods", ["schedule", "fleet-ok.yaml", "--demand",
                                 "demand-long.csv"], 1, ["2000 periods", "at most 1008"]),
    ("schedule-trace-span", ["schedule", "fleet-ok.yaml", "--trace", "trace-span.csv"], 1,
     ["--period-hours", "at most 1008", "use --period-hours"]),
    ("schedule-trace-columns", ["schedule", "fleet-ok.yaml", "--trace", "negative.csv"], 1,
     ["--trace", "columns"]),
    ("schedule-output-proc", ["schedule", "fleet-ok.yaml", "--output", "/proc/s.json"], 1,
     ["--output", "cannot write"]),
    ("tco-utilization", ["tco", "--gpu", "H100-SXM", "--utilization", "1.5"], 2,
     ["--utilization", RANGE]),
    ("tco-gpu", ["tco", "--gpu", "H100-SMX"], 1, ["H100-SMX"]),
    # --- files: binary, malformed, impossible ---------------------------------------------
    ("config-binary", ["estimate", "--model", "binary.json", "--gpu", "H100-SXM", *LEN,
                       "--batch", "1"], 1, ["binary.json", "not UTF-8"]),
    ("config-layers-huge", ["estimate", "--model", "cfg-layers.json", "--gpu", "H100-SXM",
                            *LEN, "--batch", "1"], 1, ["num_hidden_layers", "1024"]),
    ("config-kv-heads", ["estimate", "--model", "cfg-kvheads.json", "--gpu", "H100-SXM",
                         *LEN, "--batch", "1"], 1, ["num_key_value_heads=64"]),
    ("config-head-dim-zero", ["estimate", "--model", "cfg-headdim.json", "--gpu",
                              "H100-SXM", *LEN, "--batch", "1"], 1, ["head_dim=0"]),
    ("config-not-json", ["estimate", "--model", "garbage.json", "--gpu", "H100-SXM", *LEN,
                         "--batch", "1"], 1, ["not valid JSON"]),
    ("config-plan-binary", ["plan", "--model", "binary.json", "--rps", "5", *LEN, "--gpu",
                            "H100-SXM", *SMALL, "--no-explain"], 1, ["not UTF-8"]),
    ("gpu-card-binary", [*EST[:3], "--gpu", "binary.yaml", *LEN, "--batch", "1"], 1,
     ["not UTF-8"]),
    ("profile-binary", [*EST, "--batch", "1", "--profile", "binary.yaml"], 1,
     ["--profile", "not UTF-8"]),
    ("profile-nan", [*EST, "--batch", "1", "--profile", "profile-nan.yaml"], 1,
     ["compute_efficiency_scale", "nan"]),
    ("plan-file-binary", ["export", "binary.json", "--format", "json"], 1, ["not UTF-8"]),
    ("plan-file-no-fleet", ["export", "plan-nofleet.json", "--format", "json"], 1,
     ["'fleet' is required"]),
    ("plan-file-tp-two", ["export", "plan-tptwo.json", "--format", "vllm"], 1,
     ["tp='two'"]),
    ("plan-file-negative", ["export", "plan-negative.json", "--format", "vllm"], 1,
     ["replicas"]),
    ("plan-file-fp4-h100", ["export", "plan-fp4.json", "--format", "vllm"], 1,
     ["fp4", "not supported"]),
    ("validate-plan-binary", ["validate", "--bench", "bench.json", "--plan", "binary.json"],
     1, ["not UTF-8"]),
    ("bench-binary", ["validate", "--bench", "binary.json", *REP], 1, ["not UTF-8"]),
    ("bench-negative", ["validate", "--bench", "bench-negative.json", *REP], 1,
     ["ttft_ms.mean=-40.0", "cannot be a measurement"]),
    ("bench-none-completed", ["validate", "--bench", "bench-zero.json", *REP], 1,
     ["completed=0"]),
    ("bench-nan", ["validate", "--bench", "bench-nan.json", *REP], 1, ["NaN"]),
    ("bench-percentiles", ["validate", "--bench", "bench-order.json", *REP], 1,
     ["percentiles"]),
    ("bench-end-before-first", ["validate", "--bench", "bench-e2e.json", *REP], 1,
     ["ends after its first"]),
    ("bench-foreign", ["validate", "--bench", "vllm.json", *REP], 1, ["import-bench"]),
    ("validate-tolerance-nan", ["validate", "--bench", "bench.json", *REP,
                                "--tolerance-pct", "nan"], 2, ["--tolerance-pct"]),
    ("calibrate-nan", ["calibrate", "bench-nan.json", "bench.json", "--gpu", "H100-SXM",
                       "--out", "p.yaml"], 1, ["NaN"]),
    ("calibrate-negative", ["calibrate", "bench-negative.json", "bench.json", "--gpu",
                            "H100-SXM", "--out", "p.yaml"], 1, ["cannot be a measurement"]),
    ("calibrate-duplicate", ["calibrate", "bench.json", "bench.json", "--gpu", "H100-SXM",
                             "--out", "p.yaml"], 1, ["same measurement"]),
    ("calibrate-gpu-unknown", ["calibrate", "bench.json", "bench2.json", "--gpu", "H200X",
                               "--out", "p.yaml"], 1, ["H200"]),
    ("import-binary", ["import-bench", "binary.json", "--out", "b.json"], 1, ["not UTF-8"]),
    ("import-negative-rate", ["import-bench", "vllm-negative.json", "--out", "b.json"], 1,
     ["request_rate=-4"]),
    ("import-unknown-format", ["import-bench", "garbage-obj.json", "--out", "b.json"], 1,
     ["not a vLLM, GuideLLM or genai-perf"]),
    ("fleet-binary", ["size", "binary.yaml"], 1, ["fleet file", "not UTF-8"]),
    ("fleet-rate-inf", ["size", "fleet-inf.yaml"], 1, ["fleet-inf.yaml:3",
                                                      "workloads[0].rate_rps", "inf"]),
    ("fleet-price-nan", ["size", "fleet-nan.yaml"], 1, ["prices_usd_h.H100-SXM", "nan"]),
    ("fleet-redundancy-float", ["size", "fleet-redundancy.yaml"], 1, ["redundancy", "1.5"]),
    ("fleet-gpu-unknown", ["size", "fleet-gpu.yaml"], 1, ["gpus[1]", "NOPE"]),
    ("fleet-availability-unknown", ["size", "fleet-avail.yaml"], 1,
     ["availability.NOPE", "unknown GPU"]),
    ("fleet-python-tag", ["size", "fleet-tag.yaml"], 1, ["not valid YAML"]),
    ("fleet-not-mapping", ["size", "fleet-list.yaml"], 1, ["expected a mapping"]),
    ("study-binary", ["study", "run", "binary.yaml", "--out", "st"], 1, ["not UTF-8"]),
    ("study-rps-inf", ["study", "run", "study-inf.yaml", "--out", "st"], 1,
     ["axes.rps[0]", "inf"]),
    ("study-gpu-unknown", ["study", "run", "study-gpu.yaml", "--out", "st"], 1,
     ["NOPE", "unknown GPU"]),
    ("study-workers-huge", ["study", "run", "study-ok.yaml", "--out", "st", "--workers",
                            "10000"], 1, ["workers=10000", "CPUs"]),
    ("study-all-fail", ["study", "run", "study-fail.yaml", "--out", "st-fail"], 1,
     ["every scenario"]),
    ("study-price-book-binary", ["study", "run", "study-book.yaml", "--out", "st"], 1,
     ["not UTF-8"]),
    ("study-status-nothing", ["study", "status", "."], 1, ["no study store"]),
    ("study-dask-timeout-nan", ["study", "run", "study-ok.yaml", "--out", "st", "--dask",
                                "local", "--dask-timeout-s", "nan"], 2, ["--dask-timeout-s"]),
    ("study-dask-bad-address", ["study", "run", "study-ok.yaml", "--out", "st", "--dask",
                                "tcp://127.0.0.1"], 1, ["tcp://HOST:PORT"]),
    ("show-model-binary", ["show", "model", "binary.json"], 1, ["not UTF-8"]),
    ("list-models-json-catalog-missing", ["list-models", "--json"], 1,
     ["KVOPT_MODELS_DIR", "not a directory"]),
    ("list-engines-catalog-missing", ["list-engines"], 1, ["KVOPT_MODELS_DIR"]),
    ("show-engine-unknown", ["show", "engine", "vllmm"], 1, ["did you mean"]),
    ("schema-unknown", ["schema", "plans"], 1, ["unknown schema"]),
]


# environment of a case (else the test's)
ENV = {"list-models-json-catalog-missing": {"KVOPT_MODELS_DIR": "/nonexistent/kvopt-models"},
       "list-engines-catalog-missing": {"KVOPT_MODELS_DIR": "/nonexistent/kvopt-models"}}


def files(d: Path) -> None:
    """The fixture folder: one file per bad (and a few good) inputs."""
    from tests.bench.test_validate import bench
    from tests.export.test_export import _plan

    binary = b"\xff\xfe\x00binary\x80\x81"
    for name in ("binary.json", "binary.yaml", "binary.csv"):
        (d / name).write_bytes(binary)
    (d / "garbage.json").write_text("{not json")
    (d / "garbage-obj.json").write_text('{"hello": 1}')
    (d / "negative.csv").write_text("length\n10\n-3\n")
    (d / "demand-negative.csv").write_text("period,hours,rps\n0,1,2\n1,1,-4\n")
    (d / "demand-long.csv").write_text("period,hours,rps\n"
                                       + "".join(f"{i},1,2\n" for i in range(2000)))
    (d / "trace-span.csv").write_text("timestamp,input_len,output_len\n0,100,10\n"
                                      "1e9,100,10\n")
    cfg = json.loads((ROOT / "models" / "llm" / "meta-llama--Llama-3.1-8B.json").read_text())
    cfg.pop("kvopt")
    for name, over in (("layers", {"num_hidden_layers": 10**12}),
                       ("kvheads", {"num_key_value_heads": 64}), ("headdim", {"head_dim": 0})):
        (d / f"cfg-{name}.json").write_text(json.dumps({**cfg, **over}))
    (d / "profile-nan.yaml").write_text(yaml.safe_dump({
        "schema": "kvopt.profile/1", "gpu": "H100-SXM", "engine": "vllm",
        "compute_efficiency_scale": {"value": float("nan"), "source": "x"},
        "memory_efficiency_scale": {"value": 1.0, "source": "x"},
        "step_overhead_ms": {"value": 2.0, "source": "x"}}))
    plan = _plan()
    (d / "plan.json").write_text(json.dumps(plan))
    for name, edit in (("nofleet", lambda p: p.pop("fleet")),
                       ("tptwo", lambda p: p["fleet"][0].update(tp="two")),
                       ("negative", lambda p: p["fleet"][0].update(replicas=-5)),
                       ("fp4", lambda p: p["fleet"][0].update(weights="fp4"))):
        q = copy.deepcopy(plan)
        edit(q)
        (d / f"plan-{name}.json").write_text(json.dumps(q))
    b = bench()
    (d / "bench.json").write_text(json.dumps(b))
    (d / "bench2.json").write_text(json.dumps(bench(load={"mode": "rps", "value": 4.0})))
    for name, over in (("negative", {"ttft_ms": {"mean": -40.0, "p50": -35.0, "p90": -30.0,
                                                 "p99": -20.0}}),
                       ("zero", {"completed": 0}),
                       ("order", {"ttft_ms": {"mean": 40.0, "p50": 90.0, "p90": 60.0,
                                              "p99": 50.0}}),
                       ("e2e", {"e2e_ms": {"mean": 5.0, "p50": 5.0, "p90": 5.0,
                                           "p99": 5.0}})):
        (d / f"bench-{name}.json").write_text(json.dumps({**b, **over}))
    (d / "bench-nan.json").write_text(json.dumps(b).replace('"mean": 40.0', '"mean": NaN'))
    vllm = json.loads((ROOT / "tests" / "data" / "bench" / "vllm_serve.json").read_text())
    (d / "vllm.json").write_text(json.dumps(vllm))
    (d / "vllm-negative.json").write_text(json.dumps({**vllm, "request_rate": -4}))
    wl = "{name: a, model: Llama-3.1-8B, rate_rps: 3, input_len: 100, output_len: 10"
    small = "tps: [1]\nbatches: [64]\nprecisions: [fp8/fp8]\n"
    for name, text in (
            ("ok", f"gpus: [H100-SXM]\n{small}workloads:\n  - {wl}}}\n"),
            ("inf", f"gpus: [H100-SXM]\nworkloads:\n  - {wl.replace('3,', '.inf,')}}}\n"),
            ("nan", f"gpus: [H100-SXM]\n{small}prices_usd_h: {{H100-SXM: .nan}}\n"
                    f"workloads:\n  - {wl}}}\n"),
            ("redundancy", f"gpus: [H100-SXM]\n{small}workloads:\n  - {wl}, redundancy: 1.5}}\n"),
            ("gpu", f"gpus: [H100-SXM, NOPE]\nworkloads:\n  - {wl}}}\n"),
            ("avail", f"gpus: [H100-SXM]\navailability: {{NOPE: 3}}\nworkloads:\n  - {wl}}}\n"),
            ("tag", "gpus: !!python/object:os.system [ls]\nworkloads: []\n"),
            ("list", "- gpus\n")):
        (d / f"fleet-{name}.yaml").write_text(text)
    base = ("base: {model: Llama-3.1-8B, input_len: 500, output_len: 50, gpus: [H100-SXM], "
            "tp_options: [1], precisions: [fp8/fp8], batches: [64]%s}\n")
    for name, text in (("ok", "solve: plan\n" + base % "" + "axes: {rps: [2, 5]}\n"),
                       ("inf", "solve: plan\n" + base % "" + "axes: {rps: [.inf, 5]}\n"),
                       ("gpu", "solve: plan\n" + base.replace("[H100-SXM]", "[NOPE]") % ""
                        + "axes: {rps: [2]}\n"),
                       ("fail", "solve: plan\n" + base % ", slo_ttft_p99_ms: 0.001"
                        + "axes: {rps: [2, 5]}\n"),
                       ("book", "solve: plan\n" + base % ", prices: binary.yaml"
                        + "axes: {rps: [2]}\n")):
        (d / f"study-{name}.yaml").write_text(text)
    (d / "store").mkdir()
    from kvopt.study.store import Store

    with Store(d / "store"):
        pass


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    d = tmp_path_factory.mktemp("bad-input")
    files(d)
    cases = [{"id": i, "argv": argv, "cwd": str(d), "timeout_s": 30.0, "env": ENV.get(i, {})}
             for i, argv, _, _ in CASES]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "tests.badinput.runner"], cwd=ROOT, env=env,
                         input=json.dumps(cases), capture_output=True, text=True, timeout=600,
                         check=True)
    got = {r["id"]: r for r in json.loads(out.stdout)}
    got["_dir"] = {"path": str(d)}
    return got


def test_the_table_is_large_and_names_every_command() -> None:
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 120
    from kvopt.cli.main import cli

    commands = {c[1][0] for c in CASES}
    assert set(cli.commands) <= commands, set(cli.commands) - commands


@pytest.mark.parametrize(("case_id", "argv", "code", "words"), CASES,
                         ids=[c[0] for c in CASES])
def test_bad_input(results: dict[str, dict[str, Any]], case_id: str, argv: list[str],
                   code: int, words: list[str]) -> None:
    r = results[case_id]
    lines = r["stderr"].strip().splitlines()
    assert r["code"] == code, (r["code"], r["stderr"][-2000:])
    assert len(lines) == 1 and lines[0].startswith("kvopt: error: "), r["stderr"][-2000:]
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert r["seconds"] < 25.0


def test_failed_commands_wrote_nothing(results: dict[str, dict[str, Any]]) -> None:
    """No case left an output behind: pareto wrote neither its CSV nor its PNG when the
    HTML could not be written; no folder was created for an output."""
    d = Path(results["_dir"]["path"])
    for name in ("front.csv", "front.png", "front.txt", "p.yaml", "b.json", "nofolder",
                 "no", "st"):
        assert not (d / name).exists(), name
    assert not [p for p in d.iterdir() if p.name.startswith(".")]  # no temporary files
